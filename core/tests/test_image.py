"""The project's image, built from its Dockerfile by `make image` (Podman) and run.

One build per test session (scripts/image.sh; Podman's layer cache makes a second one quick).
Where no registry is reachable the base is a stand-in made from Debian 13's packages, which
the script says; everything from the Dockerfile on is what a user's Docker builds. The roles
run with the host's network against the tests' own PostgreSQL database and Redis database,
in production settings. A failure names the step and shows the container's last log lines;
where Podman cannot run, these tests fail and say why, never skip.
"""

import json
import re
import shutil
import subprocess
import time
import uuid

import httpx
import psycopg
import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connections

from config.celery import app
from core.health import BEAT_HEARTBEAT_KEY
from core.management.commands.migrate_locked import MIGRATION_LOCK_KEY
from devstack import containers
from devstack.containers import IMAGE, podman
from devstack.env import PROJECT_DIR, database_url
from devstack.ports import LOCALHOST, free_port
from devstack.wait import wait_for
from devstack.web import SlowRequest

pytestmark = pytest.mark.slow

# What the project adds to its base (the venv with GDAL's Python-side dependencies, the runtime
# libraries, the code and static files), in MB; measured 599 on 2026-12-06, 701 on 2026-12-07
# with the backups' pg_dump (postgresql-client-17 and the Perl its wrappers need, 64 MB) and
# boto3 (botocore, 31 MB).
ADDED_MB_BUDGET = 800


class Container:
    """A detached container of the image; its last log lines are in every failure message."""

    def __init__(self, role: str, env: dict[str, str]):
        self.name = f"delivery-test-{role}-{uuid.uuid4().hex[:8]}"
        flags = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
        podman("run", "-d", "--name", self.name, "--network", "host", *flags, IMAGE, role)

    def logs(self) -> str:
        return containers.logs(self.name)

    def healthcheck(self) -> subprocess.CompletedProcess:
        return podman("healthcheck", "run", self.name, timeout=60, check=False)

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)


def role_env(port: int, **extra: str) -> dict[str, str]:
    """Production settings against the tests' database and Redis database."""
    return {
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url(connections["default"].settings_dict),
        "REDIS_URL": settings.REDIS_URL,
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "CORS_ALLOWED_ORIGINS": "https://app.example.com",
        "SECURE_SSL_REDIRECT": "false",
        "PORT": str(port),
        "GUNICORN_WORKERS": "2",
        **extra,
    }


@pytest.mark.checklist("P2.2", "P2.3", "P2.4", "P2.6", "P2.7", "P2.8", "P2.9", "P10.16", "P11.5")
@pytest.mark.checklist("P2.10", configured=True)
def test_the_image_runs_as_uid_1000_without_compilers_with_its_code_read_only(image):
    # the build kept the HEALTHCHECK (Docker format) and the numeric user
    config = podman(
        "image", "inspect", IMAGE, "--format",
        "{{.Config.User}} {{json .Config.Healthcheck.Test}} {{json .Config.ExposedPorts}}",
    ).stdout  # fmt: skip
    assert config.split() == [
        "1000:1000", '["CMD","/app/deploy/docker/healthcheck.sh"]', '{"5000/tcp":{}}'
    ], config  # fmt: skip
    # and inside: UID 1000, Python 3.13 with GeoDjango's libraries, no compiler, code read-only,
    # static files baked, the directories the app writes owned by it
    script = (
        "id -u; python --version;"
        " for tool in gcc cc c++ make; do command -v $tool && echo COMPILER $tool; done;"
        " touch /app/settings-changed 2>/dev/null && echo APP-WRITABLE;"
        " test -x /app/entrypoint.sh && test -x /app/deploy/docker/healthcheck.sh && echo EXEC;"
        " test -f /app/staticfiles/admin/css/base.css && echo STATIC;"
        " touch /app/staticfiles/x /app/media/x /tmp/prometheus/x && echo APP-DIRS-WRITABLE;"
        " python -c 'from django.contrib.gis import gdal, geos; print(gdal.GDAL_VERSION)'"
    )
    result = podman("run", "--rm", "-e", "DJANGO_SETTINGS_MODULE=", "--entrypoint", "sh", IMAGE,
                    "-c", script)  # fmt: skip
    lines = result.stdout.split()
    assert lines[0] == "1000", result.stdout
    assert "3.13." in result.stdout
    assert "COMPILER" not in result.stdout and "APP-WRITABLE" not in result.stdout, result.stdout
    for marker in ("EXEC", "STATIC", "APP-DIRS-WRITABLE"):
        assert marker in lines, result.stdout
    # and its size, the project's layers against the budget
    added = int(re.search(r"the project's layers (\d+) MB", image)[1])
    print(f"\n[image] {image.strip().splitlines()[-2].strip()} (budget {ADDED_MB_BUDGET} MB)")
    assert added <= ADDED_MB_BUDGET


@pytest.mark.checklist("P2.11", "P5.17", "P6.13", "P7.1", "P8.1", "P8.7", "P12.20")
@pytest.mark.django_db(transaction=True)
def test_web_and_worker_from_the_image_serve_pass_their_health_checks_run_a_task_and_stop(
    image,
):
    web_port = free_port()
    web = Container("web", role_env(web_port))
    worker = Container(
        "worker", role_env(free_port(), CELERY_WORKER_NAME=f"image-{uuid.uuid4().hex[:6]}")
    )
    try:
        # the web answers /health/ 200 and serves the baked static files
        base = f"http://{LOCALHOST}:{web_port}"
        containers.wait_until_healthy(base, 120, web.logs)
        static = httpx.get(f"{base}/static/admin/css/base.css", timeout=5)
        assert static.status_code == 200 and "text/css" in static.headers["content-type"]
        # and Podman's run of the image's HEALTHCHECK says healthy, for the web and the worker
        check = web.healthcheck()
        assert check.returncode == 0, f"{check.stdout}{check.stderr}\n{web.logs()}"
        # running production settings: the start-up summary says so, in JSON log lines
        started = containers.logs(web.name, lines=10_000)
        assert "web starting: env=production debug=False" in started, started[-3000:]

        # the worker runs a task: beat's heartbeat, which /health/ then reports
        cache.delete(BEAT_HEARTBEAT_KEY)
        app.send_task("core.tasks.beat_heartbeat")
        try:
            wait_for(lambda: cache.get(BEAT_HEARTBEAT_KEY), 120, "the worker to run the task")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{worker.logs()}") from None
        assert httpx.get(f"{base}/health/", timeout=5).json()["checks"]["celery_beat"] == "ok"
        try:
            wait_for(lambda: worker.healthcheck().returncode == 0, 30, "the worker's check")
        except AssertionError as error:
            raise AssertionError(
                f"{error}\n{worker.healthcheck().stdout}\n{worker.logs()}"
            ) from None

        # and both stop on SIGTERM within their grace periods, exit 0
        for container, grace in ((web, 30), (worker, 30)):
            started = time.monotonic()
            podman("stop", "-t", str(grace + 10), container.name, timeout=grace + 30)
            took = time.monotonic() - started
            code = podman("inspect", "--format", "{{.State.ExitCode}}", container.name).stdout
            assert code.strip() == "0" and took < grace, (took, code, container.logs())
    finally:
        web.remove()
        worker.remove()


@pytest.mark.checklist("P1.19", "P2.12", "P4.6", "P8.7")
@pytest.mark.django_db(transaction=True)
def test_two_primaries_migrate_once_a_bad_environment_is_refused_and_sigterm_lets_requests_end(
    image,
):
    # a production container without its secret key is refused before anything starts
    refused = podman("run", "--rm", "--network", "host", "-e", "DJANGO_ENV=production", IMAGE,
                     "web", check=False, timeout=60)  # fmt: skip
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "DJANGO_SECRET_KEY is not set" in refused.stdout + refused.stderr
    assert "starting gunicorn" not in refused.stdout + refused.stderr

    # two primaries started together on an empty database, both held at the migration lock
    settings_dict = connections["default"].settings_dict
    database = f"image_race_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(database_url({**settings_dict, "NAME": "postgres"}),
                            autocommit=True)  # fmt: skip
    admin.execute(f'CREATE DATABASE "{database}"')
    race_url = database_url({**settings_dict, "NAME": database})
    holder = psycopg.connect(race_url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
    ports = [free_port(), free_port()]
    primaries = [
        Container(
            "web",
            role_env(
                port, IS_PRIMARY="1", DATABASE_URL=race_url, DJANGO_SETTINGS_MODULE="bench.settings"
            ),
        )
        for port in ports
    ]
    try:
        for primary in primaries:
            wait_for(lambda p=primary: "waiting for the migration lock" in p.logs(), 90,
                     f"{primary.name} to wait for the lock", interval=1)  # fmt: skip
        holder.close()
        for primary, port in zip(primaries, ports, strict=True):
            containers.wait_until_healthy(f"http://{LOCALHOST}:{port}", 180, primary.logs)

        # then one applied the migrations and the other found the schema current
        outputs = [containers.logs(primary.name, 400) for primary in primaries]
        appliers = [output for output in outputs if "[migrate_locked] applying" in output]
        assert len(appliers) == 1, "\n\n".join(outputs)
        other = next(output for output in outputs if output is not appliers[0])
        assert "schema is current: nothing to migrate" in other, other
        with psycopg.connect(race_url) as race:
            duplicates = race.execute(
                "SELECT app, name FROM django_migrations GROUP BY 1, 2 HAVING count(*) > 1"
            ).fetchall()
        assert duplicates == []

        # and SIGTERM during a 4 s request lets it finish, then the container exits 0
        request = SlowRequest(ports[0])
        wait_for(lambda: "slow view: sleeping 4.0 s" in primaries[0].logs(), 15, "the request")
        started = time.monotonic()
        podman("stop", "-t", "40", primaries[0].name, timeout=60)
        stopped_after = time.monotonic() - started
        response = request.finish()
        assert response.json() == {"ok": True, "slept": 4.0}, response.text
        code = podman("inspect", "--format", "{{.State.ExitCode}}", primaries[0].name).stdout
        assert code.strip() == "0" and 3 <= stopped_after < 30, (code, stopped_after)
    finally:
        holder.close()
        for primary in primaries:
            primary.remove()
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


def layers(image: str) -> list[str]:
    found = podman("image", "inspect", "--format", "{{json .RootFS.Layers}}", image)
    return json.loads(found.stdout)


@pytest.mark.checklist("P2.5")
def test_a_code_change_rebuilds_on_the_same_dependency_layers(image, tmp_path):
    # given the build context (what .dockerignore lets through) with one Python file changed
    context = tmp_path / "context"
    shutil.copytree(
        PROJECT_DIR,
        context,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".tools", ".local", "node_modules", "staticfiles", "media",
            "__pycache__", ".env",
        ),
    )  # fmt: skip
    changed = context / "core" / "__init__.py"
    changed.write_text(changed.read_text() + "\n# a code change\n")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", (context / "Dockerfile").read_text(), re.M)

    # when the image is built again from it
    tag = f"localhost/delivery:rebuild-{uuid.uuid4().hex[:6]}"
    try:
        built = containers.run(
            [
                "podman", "build", "--format", "docker",
                "--build-arg", f"PYTHON_IMAGE=docker.io/library/{base.group(1)}",
                "-t", tag, str(context),
            ],
            timeout=900,
        )  # fmt: skip
        before, after = layers(IMAGE), layers(tag)
    finally:
        podman("rmi", "-f", tag, check=False)

    # then the virtualenv was not installed again: the builder's `uv sync` step came from the
    # cache, and the new image shares every layer up to the virtualenv with the old one,
    # differing from the code on
    output = built.stdout + built.stderr
    sync_step = output[output.index("uv sync") :]
    assert sync_step.split("\n", 2)[1].startswith("--> Using cache"), sync_step[:500]
    base_layers = len(layers(f"docker.io/library/{base.group(1)}"))
    shared = next(i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b)
    # the base, apt's runtime libraries, the app user and the virtualenv: then the code
    assert shared >= base_layers + 3, (base_layers, shared, len(before))
    assert len(after) == len(before)
