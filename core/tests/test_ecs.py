"""The ECS task definitions (deploy/ecs/) run as containers of the image, under Podman.

Each task definition's one container runs as ECS would start it: the image's entrypoint with
the definition's `command`, its `environment`, its `secrets` (values of the test's own, where
ECS would read them from Secrets Manager), its `user`, and its `stopTimeout`. Each gets its
own address on a Podman network, as awsvpc tasks do, with PostGIS and Redis containers (the
Compose stand-ins) as the managed database and Redis. The migrate task runs first and exits 0;
then every `healthCheck` passes, run as ECS runs it (the command inside the container); beat's
heartbeat reaches the web task's /health/; the sockets task answers /health/ and upgrades a
WebSocket handshake to the app's consumer, on its own address, as the ALB's /ws/* rule would
send it; and every task stops on SIGTERM within its `stopTimeout`, exit 0.

Not exercised (they need AWS): registering the definitions (validated offline against
botocore's model in test_deploy_configs.py), the services and their deployment settings, the
load balancer's target groups and listener rule, the awslogs driver and the IAM roles.
"""

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from devstack import containers
from devstack.env import PROJECT_DIR
from devstack.wait import wait_for

pytestmark = pytest.mark.slow

ECS = PROJECT_DIR / "deploy" / "ecs"
LONG_RUNNING = ("web", "sockets", "worker", "worker-high", "beat")


def definition(name: str) -> dict:
    (container,) = json.loads((ECS / f"{name}.json").read_text())["containerDefinitions"]
    return container


class Task:
    def __init__(self, name: str, dependencies: containers.Dependencies, secret_values: dict):
        self.definition = definition(name)
        self.name = f"{dependencies.prefix}-{name}"
        env = {item["name"]: item["value"] for item in self.definition["environment"]}
        env |= {item["name"]: secret_values[item["name"]] for item in self.definition["secrets"]}
        flags = [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]
        containers.podman(
            "run", "-d", "--name", self.name, "--network", dependencies.network,
            *dependencies.host_entries(), "--user", self.definition["user"],
            "--stop-timeout", str(self.definition["stopTimeout"]),
            *flags, containers.IMAGE, *self.definition["command"],
        )  # fmt: skip

    def healthy(self) -> bool:
        return self.health_check().returncode == 0

    def health_check(self):
        kind, *command = self.definition["healthCheck"]["command"]
        assert kind == "CMD"
        timeout = self.definition["healthCheck"]["timeout"]
        return containers.run(
            ["podman", "exec", self.name, *command], timeout=timeout + 30, check=False
        )

    def stop(self) -> tuple[int, float]:
        return containers.stop(self.name, self.definition["stopTimeout"])

    def remove(self) -> None:
        containers.podman("rm", "-f", "-t", "0", self.name, check=False)


# Seven containers (the migrate task first, then five of the app at once) on the two-CPU test
# machines: past the default 120 s when the machine is busy (191 s measured with a load average
# of 9); the root conftest gives every test of the image 900 s.
@pytest.mark.checklist("P8.8")
def test_the_ecs_task_definitions_run_pass_their_health_checks_and_stop_in_time(image):
    print(f"\n[ecs] images:\n{containers.make_compose_standins()}")
    dependencies = containers.Dependencies("delivery-ecs")
    secret_values = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": dependencies.database_url,
        "REDIS_URL": dependencies.redis_url,
        "RAZORPAY_KEY_ID": "",
        "RAZORPAY_KEY_SECRET": "",
        "RAZORPAY_WEBHOOK_SECRET": "",
        "OTP_HMAC_KEY": secrets.token_urlsafe(32),
        "MSG91_AUTH_KEY": "not-called-in-this-test",
        "SENTRY_DSN": "",
    }
    tasks: dict[str, Task] = {}

    def all_logs() -> str:
        names = [dependencies.postgres, dependencies.redis] + [t.name for t in tasks.values()]
        return "\n".join(containers.logs(name, 20) for name in names)

    try:
        # given the database and Redis, and the migrate task run to its end
        dependencies.start()
        tasks["migrate"] = Task("migrate", dependencies, secret_values)
        exit_code = containers.podman("wait", tasks["migrate"].name, timeout=600).stdout
        assert int(exit_code.strip()) == 0, all_logs()

        # when the long-running tasks start
        for name in LONG_RUNNING:
            tasks[name] = Task(name, dependencies, secret_values)

        # then every health check the definitions have passes, run as ECS runs it
        started = time.monotonic()
        for name in LONG_RUNNING:
            check = tasks[name].definition.get("healthCheck")
            if check is None:
                continue
            bound = check["startPeriod"] + check["interval"] * check["retries"]
            try:
                wait_for(tasks[name].healthy, bound, f"{name}'s health check", interval=2)
            except AssertionError as error:
                raise AssertionError(f"{error}\n{all_logs()}") from None
        print(f"[ecs] health checks passed {time.monotonic() - started:.1f} s after the start")

        # and beat's heartbeat reaches the web task's /health/ (a worker task ran it)
        (port,) = [m["containerPort"] for m in tasks["web"].definition["portMappings"]]
        url = f"http://{dependencies.address(tasks['web'].name)}:{port}/health/"

        def beat_reported() -> bool:
            try:
                return httpx.get(url, timeout=5).json()["checks"]["celery_beat"] == "ok"
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        try:
            wait_for(beat_reported, 60, "beat's heartbeat in the web task's /health/")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{all_logs()}") from None

        # and the sockets task: its health check asked its own /health/ (not a check that
        # passes for any role), which answers 200 on its address, where a WebSocket handshake
        # is upgraded and reaches the app's consumer (4401: no token)
        sockets = tasks["sockets"]
        (port,) = [m["containerPort"] for m in sockets.definition["portMappings"]]
        sockets_at = f"{dependencies.address(sockets.name)}:{port}"
        assert f"127.0.0.1:{port}/health/: 200" in sockets.health_check().stdout
        assert httpx.get(f"http://{sockets_at}/health/", timeout=5).status_code == 200
        assert containers.anonymous_socket_close_code(f"ws://{sockets_at}") == 4401
        assert "starting gunicorn for the sockets" in containers.logs(sockets.name, 1000)

        # and every task stops on SIGTERM within its stopTimeout, exit 0 (the workers use their
        # soft shutdown, 25 s even when idle: worker_enable_soft_shutdown_on_idle)
        with ThreadPoolExecutor(len(LONG_RUNNING)) as pool:
            results = pool.map(lambda name: tasks[name].stop(), LONG_RUNNING)
            stopped = dict(zip(LONG_RUNNING, results, strict=True))
        for name, (code, took) in stopped.items():
            print(f"[ecs] {name}: exit {code} {took:.1f} s after SIGTERM")
            assert code == 0, containers.logs(tasks[name].name)
            assert took < tasks[name].definition["stopTimeout"], (name, took)
    finally:
        for task in tasks.values():
            task.remove()
        dependencies.remove()
