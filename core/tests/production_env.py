"""A valid production environment, and ways to load the settings under it in a fresh process."""

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connections

from devstack.env import PROJECT_DIR, base_env, database_url, local_production_env

PUBLIC_HOST = "api.example.com"
WEB_ORIGIN = "https://app.example.com"

_PROBLEM_LINE = re.compile(r"^  - (.+)$", re.MULTILINE)


def production_env(**changes: str | None) -> dict[str, str]:
    """Production as deployed behind a TLS proxy at PUBLIC_HOST.

    It points at the tests' database and Redis: the test database once pytest-django has made
    it (request `django_db_setup` before connecting), never the developer's own data.
    A change of None removes that variable. Built from scratch: no .env or shell leaks in.
    """
    deployed = {
        "ALLOWED_HOSTS": PUBLIC_HOST,
        "CORS_ALLOWED_ORIGINS": WEB_ORIGIN,
        "SECURE_SSL_REDIRECT": None,  # production's own default: on
        "DATABASE_URL": database_url(connections["default"].settings_dict),
        "REDIS_URL": settings.REDIS_URL,
    }
    return local_production_env(**{**deployed, **changes})


def run_python(
    code: str, *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess:
    """Runs `code` in a new interpreter of this virtualenv, from the project directory."""
    return _run([sys.executable, "-c", code, *args], env, timeout)


def run_manage(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
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


def _run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_django(env: dict[str, str]) -> subprocess.CompletedProcess:
    """What every process (gunicorn, Celery, manage.py) does first: load settings and apps."""
    return run_python("import django; django.setup()", env=env)


_PRINT_SETTINGS = """
import json, sys, django
from django.conf import settings
if sys.argv[1] == "setup":
    django.setup()
print(json.dumps({name: getattr(settings, name) for name in sys.argv[2:]}, default=str))
"""


def settings_as_json(env: dict[str, str], *names: str, setup: bool = False) -> dict:
    """The named settings as a fresh process under `env` sees them; `setup` loads the apps too."""
    result = run_python(_PRINT_SETTINGS, "setup" if setup else "-", *names, env=env)
    assert result.returncode == 0, f"settings did not load:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def refusal_problems(stderr: str) -> list[str]:
    """The problems listed by the settings' 'Refusing to start' message, one per entry."""
    assert "ImproperlyConfigured: Refusing to start (DJANGO_ENV=production)" in stderr, stderr
    message = stderr.split("Refusing to start", 1)[1]
    return _PROBLEM_LINE.findall(message)
