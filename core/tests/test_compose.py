"""docker-compose.yml itself, brought up with podman-compose, and a delivery made through it.

The file is used as it is, under a project name and published ports of the test's own, with
two overrides: the app services run the image this session built (`make image`) instead of
building it again, and the sockets service drains over 3 s instead of 20 (SOCKETS_DRAIN_SECONDS:
its stop is checked with a socket open, within the test's time limit). Its `postgis/postgis`
and `redis` images are stand-ins made from Debian 13's packages where the real ones are absent
(no registry is reachable from these machines): PostgreSQL 17 with PostGIS 3 under the tag
`16-3.5`, and Debian's redis-server under `7-alpine` (deploy/podman/*-standin.Containerfile).
Podman 4.3 neither runs health checks on a timer nor waits on `condition: service_healthy`, so
the test runs each check itself and the entrypoint's own waits do the ordering. The delivery's
sockets are opened where web's /api/config/ says, as the apps open them: on the sockets
service's published port (SOCKETS_PORT).
"""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import websockets.sync.client
import yaml
from websockets.exceptions import ConnectionClosed

from accounts.tests.support import login_code_in
from delivery.tests.journey import Api, deliver_one_cash_order
from devstack import containers
from devstack.env import PROJECT_DIR, VENV_BIN
from devstack.ports import LOCALHOST, free_port
from devstack.wait import wait_for
from orders.tests.factories import PICKUP

pytestmark = pytest.mark.slow

COMPOSE = str(VENV_BIN / "podman-compose")
SERVICES = ("db", "redis", "web", "sockets", "worker", "worker-high", "beat")
APP_SERVICES = ("web", "sockets", "worker", "worker-high", "beat")
DRAIN_SECONDS = 3  # the sockets service's SOCKETS_DRAIN_SECONDS here (20 in the file)
# Inside seed_demo's Bengaluru area, about 1.5 km from the pickup.
DROP = {"lat": 12.9616, "lng": 77.6046, "address": "Richmond Town"}


@dataclass
class SplitApi(Api):
    """The apps' way: the API at base_url, the sockets at /api/config/'s websocket_url."""

    websocket_url: str = ""

    def connect(self, path: str, token: str):
        return websockets.sync.client.connect(
            f"{self.websocket_url}{path}?token={token}", origin=self.base_url, open_timeout=10
        )


class ComposeProject:
    def __init__(self, work_dir, project: str, port: int, sockets_port: int):
        self.project, self.port, self.sockets_port = project, port, sockets_port
        override = work_dir / "compose.test.yml"
        services = {name: {"image": containers.IMAGE} for name in APP_SERVICES}
        services["sockets"]["environment"] = {"SOCKETS_DRAIN_SECONDS": str(DRAIN_SECONDS)}
        override.write_text(json.dumps({"services": services}))
        self.files = ["-f", "docker-compose.yml", "-f", str(override)]

    def compose(self, *args: str, timeout: float = 600) -> str:
        result = containers.run(
            [COMPOSE, "-p", self.project, *self.files, *args],
            env=containers.env(WEB_PORT=str(self.port), SOCKETS_PORT=str(self.sockets_port)),
            cwd=PROJECT_DIR,
            timeout=timeout,
        )
        return result.stdout + result.stderr

    def service(self, name: str) -> dict:
        file = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())
        return file["services"][name]

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def check(self, service: str) -> bool:
        """The image's (or the file's) health check, run now: Podman 4.3 schedules none."""
        name = self.container(service)
        return containers.podman("healthcheck", "run", name, check=False).returncode == 0

    def manage(self, *command: str) -> str:
        """manage.py inside the web container, as ops would run it."""
        return self.exec("web", "python", "manage.py", *command)

    def exec(self, service: str, *command: str) -> str:
        return containers.podman("exec", self.container(service), *command).stdout

    def all_logs(self) -> str:
        return "\n".join(containers.logs(self.container(name), 15) for name in SERVICES)

    def leftovers(self) -> list[str]:
        names = containers.podman(
            "ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
            "--format", "{{.Names}}",
        ).stdout.split()  # fmt: skip
        volumes = containers.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
        return names + [name for name in volumes if name.startswith(f"{self.project}_")]


# Seven containers (five of the app) starting at once on the two-CPU test machines: past the
# default 120 s when the machine is busy (237 s measured with a load average of 10); the root
# conftest gives every test of the image 900 s, for the build when it comes first.
@pytest.mark.checklist("P8.16", "P8.17", "P8.18", "P8.20", "P8.23", "P11.7")
@pytest.mark.checklist("P8.19", "P8.21", configured=True)
def test_compose_up_runs_every_service_a_delivery_goes_through_and_down_leaves_nothing(
    image, tmp_path
):
    standins = containers.make_compose_standins()
    print(f"\n[compose] images:\n{standins}")
    project = f"delivery-test-{uuid.uuid4().hex[:6]}"
    stack = ComposeProject(tmp_path, project, free_port(), free_port())
    base_url = f"http://{LOCALHOST}:{stack.port}"
    try:
        # when the file is brought up as it is
        started = time.monotonic()
        stack.compose("up", "-d")

        # then the web answers on the published port, every service is up and passes its check
        containers.wait_until_healthy(base_url, 240, stack.all_logs)
        for service in SERVICES:
            state = containers.podman(
                "inspect", "--format", "{{.State.Status}}", stack.container(service)
            ).stdout.strip()
            assert state == "running", f"{service}: {state}\n{stack.all_logs()}"

            try:
                wait_for(lambda s=service: stack.check(s), 60, f"{service}'s check", interval=2)
            except AssertionError as error:
                raise AssertionError(
                    f"{error}\n{containers.logs(stack.container(service))}"
                ) from None

        print(f"[compose] every check passed {time.monotonic() - started:.1f} s after up")

        # and db and redis are cut off from all but the app: no port published, and not
        # reachable, by name or by address, from a container on the frontend network alone,
        # while web reaches them
        for service, port in (("db", 5432), ("redis", 6379)):
            published = containers.podman("port", stack.container(service)).stdout.strip()
            assert published == "", f"{service} publishes {published}"
            address = containers.podman(
                "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                stack.container(service),
            ).stdout.strip()  # fmt: skip
            assert reach(["exec", stack.container("web"), "python"], service, port)
            outside = ["run", "--rm", "--network", f"{stack.project}_frontend"]
            for host in (service, address):
                assert not reach(
                    [*outside, "--entrypoint", "python", containers.IMAGE], host, port
                ), host

        # and web tells the apps the sockets' published port, where /health/ answers and a
        # WebSocket handshake reaches the app's consumer (4401: no token)
        config = httpx.get(f"{base_url}/api/config/", timeout=10).json()
        websocket_url = config["websocket_url"]
        assert websocket_url == f"ws://localhost:{stack.sockets_port}", config
        sockets_health = f"http://{LOCALHOST}:{stack.sockets_port}/health/"
        assert httpx.get(sockets_health, timeout=10).status_code == 200
        assert containers.anonymous_socket_close_code(websocket_url) == 4401

        # and a delivery goes through it: ops' service area and approval inside the web
        # container, the login codes from its SMS outbox, the API through web's port and the
        # sockets through the sockets service's
        stack.manage("seed_demo", "--riders", "0")
        api = SplitApi(
            base_url,
            login_code=lambda phone: login_code_in(
                stack.manage("sms_outbox", "--phone", phone, "--limit", "1"), phone
            ),
            approve_rider=lambda phone: stack.manage("rider_approve", phone),
            websocket_url=websocket_url,
        )
        try:
            delivered = deliver_one_cash_order(
                api,
                rider_phone="+919845033333",
                customer_phone="+919845044444",
                pickup=PICKUP,
                drop=DROP,
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{stack.all_logs()}") from None
        order = api.request(
            "GET", f"/api/v1/orders/{delivered.order['id']}/", headers=delivered.customer_headers
        ).json()
        assert order["status"] == "delivered"
        print(f"[compose] delivered {time.monotonic() - started:.1f} s after up")

        # when the sockets service is stopped (SIGTERM) while the rider's socket is open on it
        rider_token = delivered.rider_headers["Authorization"].removeprefix("Bearer ")
        grace = _seconds(stack.service("sockets")["stop_grace_period"])
        with api.connect("/ws/rider/", rider_token) as rider_socket:
            assert rider_socket.ping().wait(10)  # open, and answered by the sockets service
            with ThreadPoolExecutor(1) as pool:
                stopping = pool.submit(containers.stop, stack.container("sockets"), grace)
                try:
                    while True:
                        rider_socket.recv(timeout=grace)
                except ConnectionClosed:
                    closed_with = rider_socket.close_code
                code, took = stopping.result()
        # then the socket was closed with 1012 ("reconnect") within the drain, and the service
        # stopped cleanly in time
        print(f"[compose] sockets: closed {closed_with}, exit {code} {took:.1f} s after SIGTERM")
        assert closed_with == 1012
        assert code == 0, containers.logs(stack.container("sockets"))
        assert took < min(grace, DRAIN_SECONDS + 10), took
    finally:
        # and `down -v` leaves no container and no volume behind
        stack.compose("down", "-v", timeout=300)
        deadline = time.monotonic() + 30
        while stack.leftovers() and time.monotonic() < deadline:
            time.sleep(1)
    assert not stack.leftovers(), stack.leftovers()


def reach(podman_args: list[str], host: str, port: int) -> bool:
    """Whether Python in a container (`podman exec NAME python`, or `podman run ...
    --entrypoint python IMAGE`) connects to host:port."""
    probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
    result = containers.podman(*podman_args, "-c", probe, host, str(port), timeout=60, check=False)
    return result.returncode == 0


def _seconds(duration: str) -> int:
    assert duration.endswith("s") and duration[:-1].isdigit(), duration
    return int(duration[:-1])
