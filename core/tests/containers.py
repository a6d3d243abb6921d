"""Podman for the container tests: the project's settings, its image and its Compose stand-ins.

Every call goes through the project's containers.conf (runc, ulimits within the host's). A
failing call fails the test with the command and its output; nothing is skipped.
"""

import os
import subprocess
from collections.abc import Callable

import httpx

from core.tests import servers
from core.tests.celery_processes import wait_for

IMAGE = "localhost/delivery:test"
SCRIPT = servers.PROJECT_DIR / "scripts" / "image.sh"
CONTAINERS_CONF = servers.PROJECT_DIR / "deploy" / "podman" / "containers.conf"


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), **extra}


def run(args: list[str], *, timeout: float = 120, check: bool = True, **kwargs):
    result = subprocess.run(
        args,
        env=kwargs.pop("env", None) or env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if check:
        assert result.returncode == 0, (
            f"{' '.join(args)} (exit {result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return run(["podman", *args], timeout=timeout, check=check)


def logs(container: str, lines: int = 40) -> str:
    result = podman("logs", "--tail", str(lines), container, check=False)
    return f"--- last log lines of {container} ---\n{result.stdout}{result.stderr}"


def build_image() -> str:
    """`make image` under the tests' tag; returns what it printed (the size, stand-ins)."""
    return run([str(SCRIPT)], env=env(IMAGE=IMAGE), timeout=1800).stdout


def make_compose_standins() -> str:
    """docker-compose.yml's PostGIS and Redis images, as stand-ins where they are absent."""
    return run([str(SCRIPT), "standins"], timeout=1800).stdout


def wait_until_healthy(base_url: str, timeout: float, logs: Callable[[], str]) -> None:
    """Waits for /health/ to answer 200; fails with the containers' last log lines."""

    def healthy() -> bool:
        try:
            return httpx.get(f"{base_url}/health/", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout, f"{base_url}/health/ to answer 200", interval=1)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{logs()}") from None
