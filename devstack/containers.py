"""Starts containers with Podman, for the container tests and the proof suite: builds the
project's image, and runs PostGIS and Redis beside it (docker-compose.yml's images, or their
stand-ins).

Every call goes through the project's containers.conf (runc, ulimits within the host's). A
failing call fails the test with the command and its output; nothing is skipped.
"""

import os
import subprocess
import time
import uuid
from collections.abc import Callable

import httpx
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from devstack.env import PROJECT_DIR
from devstack.wait import wait_for

IMAGE = "localhost/delivery:test"
# docker-compose.yml's images: stand-ins where no registry is reachable (make_compose_standins)
POSTGIS = "docker.io/postgis/postgis:16-3.5"
REDIS = "docker.io/library/redis:7-alpine"
SCRIPT = PROJECT_DIR / "scripts" / "image.sh"
CONTAINERS_CONF = PROJECT_DIR / "deploy" / "podman" / "containers.conf"


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


def stop(container: str, grace: int) -> tuple[int, float]:
    """SIGTERM, as an orchestrator sends it, SIGKILL after `grace` s; the container's exit code
    and the seconds it took to stop."""
    started = time.monotonic()
    podman("stop", "-t", str(grace), container, timeout=grace + 30)
    took = time.monotonic() - started
    code = podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout
    return int(code.strip()), took


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


def anonymous_socket_close_code(origin: str, timeout: float = 10) -> int:
    """Opens an order's tracking socket (`origin` + /ws/delivery/<a random id>/) without a
    token: the handshake must be upgraded (101), and the close code the consumer then sends is
    returned (4401 when the app's consumer ran: it accepts, then closes the unsigned)."""
    url = f"{origin}/ws/delivery/{uuid.uuid4()}/"
    with websockets.sync.client.connect(url, open_timeout=timeout) as socket:
        assert socket.response.status_code == 101, socket.response
        try:
            frame = socket.recv(timeout=timeout)
        except ConnectionClosed:
            return socket.close_code
    raise AssertionError(f"{url}: a frame instead of a close: {frame!r}")


class Dependencies:
    """PostGIS and Redis containers on a Podman network of their own: what a platform's managed
    database and Redis are to the containers of an orchestrator's test. The network gives each
    container its own address, as pods and awsvpc tasks have."""

    PASSWORD = "orchestrator-test"

    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.network = self.prefix
        self.postgres, self.redis = f"{self.prefix}-postgres", f"{self.prefix}-redis"

    @property
    def database_url(self) -> str:
        return f"postgis://delivery:{self.PASSWORD}@{self.postgres}:5432/delivery"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis}:6379/0"

    def start(self) -> None:
        podman("network", "create", self.network)
        podman(
            "run", "-d", "--name", self.postgres, "--network", self.network,
            "-e", "POSTGRES_DB=delivery", "-e", "POSTGRES_USER=delivery",
            "-e", f"POSTGRES_PASSWORD={self.PASSWORD}", POSTGIS,
        )  # fmt: skip
        # No persistence: a restart empties it, as a Redis without a volume would be.
        podman(
            "run", "-d", "--name", self.redis, "--network", self.network, REDIS,
            "redis-server", "--save", "", "--appendonly", "no",
        )  # fmt: skip

    def address(self, container: str) -> str:
        """The container's address on this network."""
        network = f'(index .NetworkSettings.Networks "{self.network}")'
        found = podman("inspect", "--format", f"{{{{{network}.IPAddress}}}}", container)
        return found.stdout.strip()

    def host_entries(self) -> list[str]:
        """`podman run` flags that resolve the two by /etc/hosts, not by the network's DNS.

        A CI run saw an ECS worker stopping beside four other tasks wait in getaddrinfo for
        the Redis container's name until its 40 s bound. Podman's aardvark-dns (Debian 12's
        1.4) is known to drop queries while it reloads, which it does as containers leave the
        network (containers/aardvark-dns#389); not reproduced here (a lookup every 20 ms for
        40 s over five concurrent stops: none took 0.5 s). A platform's managed Redis and
        database are behind its own resolver; the test network's name service is not what
        these tests are about.
        """
        return [
            flag
            for name in (self.postgres, self.redis)
            for flag in ("--add-host", f"{name}:{self.address(name)}")
        ]

    def remove(self) -> None:
        podman("rm", "-f", "-t", "5", self.postgres, self.redis, check=False)
        podman("network", "rm", "-f", self.network, check=False)
