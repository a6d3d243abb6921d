"""Starts one-off commands in a fresh interpreter of this virtualenv, from the project
directory: manage.py (collectstatic as the image build runs it, the readiness report, deploy
checks) and `python -c`. Each returns what the command printed and its exit status."""

import secrets
import subprocess
import sys
from pathlib import Path

from devstack.env import PROJECT_DIR, base_env


def run_python(
    code: str, *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess:
    """Runs `code` in a new interpreter of this virtualenv, from the project directory."""
    return _run([sys.executable, "-c", code, *args], env, timeout)


def run_manage(
    *args: str, env: dict[str, str], timeout: float | None = 60
) -> subprocess.CompletedProcess:
    return _run([sys.executable, "manage.py", *args], env, timeout)


def collect_static(root: Path) -> Path:
    """collectstatic into `root`, as the image build does (development settings, no Redis)."""
    result = run_manage(
        *("collectstatic", "--noinput", "-v", "0"),
        env=base_env(
            DJANGO_ENV="development",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            REDIS_URL="",
            STATIC_ROOT=str(root),
        ),
    )
    assert result.returncode == 0, result.stderr
    return root


def _run(
    command: list[str], env: dict[str, str], timeout: float | None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
