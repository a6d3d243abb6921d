"""docker-compose.yml itself, brought up with podman-compose, and a delivery made through it.

The file is used as it is, under a project name and published port of the test's own, with one
override: the app services run the image this session built (`make image`) instead of building
it again. Its `postgis/postgis` and `redis` images are stand-ins made from Debian 13's packages
where the real ones are absent (no registry is reachable from these machines): PostgreSQL 17
with PostGIS 3 under the tag `16-3.5`, and Debian's redis-server under `7-alpine`
(deploy/podman/*-standin.Containerfile). Podman 4.3 neither runs health checks on a timer nor
waits on `condition: service_healthy`, so the test runs each check itself and the entrypoint's
own waits do the ordering.
"""

import json
import time
import uuid

import pytest

from accounts.tests.support import login_code_in
from core.tests import containers, servers
from core.tests.celery_processes import wait_for
from delivery.tests.journey import Api, deliver_one_cash_order
from orders.tests.factories import PICKUP

pytestmark = pytest.mark.slow

COMPOSE = str(servers.VENV_BIN / "podman-compose")
SERVICES = ("db", "redis", "web", "worker", "worker-high", "beat")
APP_SERVICES = ("web", "worker", "worker-high", "beat")
# Inside seed_demo's Bengaluru area, about 1.5 km from the pickup.
DROP = {"lat": 12.9616, "lng": 77.6046, "address": "Richmond Town"}


class ComposeProject:
    def __init__(self, work_dir, project: str, port: int):
        self.project, self.port = project, port
        override = work_dir / "compose.test.yml"
        override.write_text(
            json.dumps({"services": {name: {"image": containers.IMAGE} for name in APP_SERVICES}})
        )
        self.files = ["-f", "docker-compose.yml", "-f", str(override)]

    def compose(self, *args: str, timeout: float = 600) -> str:
        result = containers.run(
            [COMPOSE, "-p", self.project, *self.files, *args],
            env=containers.env(WEB_PORT=str(self.port)),
            cwd=servers.PROJECT_DIR,
            timeout=timeout,
        )
        return result.stdout + result.stderr

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


@pytest.mark.checklist("P8.16", "P8.17", "P8.18", "P8.19", "P8.20", "P8.21", "P11.7")
def test_compose_up_runs_every_service_a_delivery_goes_through_and_down_leaves_nothing(
    image, tmp_path
):
    standins = containers.make_compose_standins()
    print(f"\n[compose] images:\n{standins}")
    stack = ComposeProject(tmp_path, f"delivery-test-{uuid.uuid4().hex[:6]}", servers.free_port())
    base_url = f"http://{servers.LOCALHOST}:{stack.port}"
    try:
        # when the file is brought up as it is
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

        # and a delivery goes through it: ops' service area and approval inside the web
        # container, the login codes from its SMS outbox, everything else through the port
        stack.manage("seed_demo", "--riders", "0")
        api = Api(
            base_url,
            login_code=lambda phone: login_code_in(
                stack.manage("sms_outbox", "--phone", phone, "--limit", "1"), phone
            ),
            approve_rider=lambda phone: stack.manage("rider_approve", phone),
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
    finally:
        # and `down -v` leaves no container and no volume behind
        stack.compose("down", "-v", timeout=300)
        deadline = time.monotonic() + 30
        while stack.leftovers() and time.monotonic() < deadline:
            time.sleep(1)
    assert not stack.leftovers(), stack.leftovers()
