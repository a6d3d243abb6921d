"""`manage.py readiness` and /api/v1/ops/readiness/ against a real deployment of the app.

The deployment is built as production runs: gunicorn with uvicorn workers behind a simulated
TLS proxy (ALLOWED_HOSTS=api.example.com, SSL redirect on, static files collected), a Celery
worker on the three queues and beat, over the tests' PostgreSQL database and a redis-server of
its own. The report must pass every line it checks there; then one thing at a time is broken
(Redis, a security header, a migration, a gunicorn value) and the report must name exactly
the lines that broke, with FAIL, and exit 1.
"""

import json
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import httpx
import pytest
from celery.signals import import_modules
from django.conf import settings
from django.db.migrations.loader import MigrationLoader

from checklist.spec import load
from core.tests.production_env import PUBLIC_HOST, production_env
from devstack.celery import CELERY, CeleryProcess, beat_heartbeat_recorded
from devstack.commands import collect_static, run_manage, run_python
from devstack.env import PROJECT_DIR
from devstack.ports import SilentListener, free_port
from devstack.redis import RedisServer
from devstack.wait import wait_for
from devstack.web import Server, start_server
from readiness import checks, live_ids, runner
from readiness.checks import CHECKS
from readiness.registry import collect

# django_db: pytest-django creates the test database (which the deployment uses) only for a run
# that has database tests in it. Nothing here writes through the test's own connection.
pytestmark = [pytest.mark.slow, pytest.mark.django_db]

# Lines about this project's image: skipped anywhere else (not in a container, or not in it).
IMAGE_LINES = {"P2.6", "P2.7", "P2.8", "P2.9", "P10.15"}
HTTPS = {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https"}  # as the TLS-terminating proxy
LINE = re.compile(r"^(PASS|FAIL|SKIP) (P\d+\.\d+) ", re.MULTILINE)


@dataclass
class Deployment:
    env: dict[str, str]
    web: Server
    work_dir: Path


@pytest.fixture(scope="module")
def deployment(django_db_setup, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("readiness")
    redis_server = RedisServer(work_dir / "redis")
    redis_server.start()
    env = production_env(
        # the test process's key: its tokens (the API test's users) are the server's
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        REDIS_URL=redis_server.url,
        STATIC_ROOT=str(collect_static(work_dir / "static")),
        IS_PRIMARY="1",
        REMAP_SIGTERM="SIGQUIT",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
    )
    started: list = []
    try:
        web = start_server(env, work_dir / "web", workers=2)
        started.append(web)
        node = f"readiness-{uuid.uuid4().hex[:8]}@%h"
        worker = CeleryProcess(
            [
                *(CELERY, "-A", "config", "worker", "-Q", "high,default,low", "-n", node),
                *("--concurrency", "1", "--without-mingle", "--without-gossip"),
            ],
            env,
            work_dir / "worker.log",
        )
        started.append(worker)
        worker.wait_for_output(" ready.", 60)
        beat = CeleryProcess([CELERY, "-A", "config", "beat"], env, work_dir / "beat.log")
        started.append(beat)
        # beat queues a heartbeat at start; the worker records it
        wait_for(lambda: beat_heartbeat_recorded(redis_server.url), 60, "beat's first heartbeat")
        yield Deployment(env, web, work_dir)
    finally:
        for process in reversed(started):
            if isinstance(process, Server):
                process.stop()
            else:
                process.close()
        redis_server.kill()


def readiness(deployment: Deployment, *args: str, url: str | None = None, **env_changes):
    env = {**deployment.env, **env_changes}
    started = time.monotonic()
    result = run_manage("readiness", "--url", url or deployment.web.base_url, *args, env=env)
    result.seconds = time.monotonic() - started
    return result


def statuses(result) -> dict[str, str]:
    return {line_id: status for status, line_id in LINE.findall(result.stdout)}


def details(result) -> dict[str, str]:
    found = {}
    for line in result.stdout.splitlines():
        if LINE.match(line):
            found[line.split()[1]] = line.split(" — ", 1)[1]
    return found


def failing(result) -> set[str]:
    return {line_id for line_id, status in statuses(result).items() if status == "FAIL"}


def test_celery_sets_django_up_again_before_the_checks_run_side_by_side(monkeypatch):
    # Importing the task modules makes Celery's Django fix-up call django.setup(), which sets
    # logging up afresh; on a check's thread, a logging check beside it saw Django's defaults.
    threads = []

    def record(**kwargs):
        threads.append(threading.current_thread())

    import_modules.connect(record, weak=False)
    try:
        wanted = {"beat_schedule", "logs_to_stdout", "database_query_logs"}
        monkeypatch.setattr(checks, "CHECKS", [c for c in CHECKS if c.name in wanted])
        results = runner.run("http://127.0.0.1:9", timeout=30)
    finally:
        import_modules.disconnect(record)

    assert threads == [threading.main_thread()]
    assert {result.status for result in results} == {"PASS"}, results


def test_every_module_with_checks_is_listed_so_its_checks_run():
    package = Path(checks.__file__).parent
    with_checks = {
        module.__name__
        for module in map(import_module, (f"readiness.{p.stem}" for p in package.glob("*.py")))
        if collect([module])
    }
    assert with_checks == {module.__name__ for module in checks.MODULES}
    assert len(CHECKS) == len({item.name for item in CHECKS}) > 90


def test_every_line_checked_live_is_a_checklist_line():
    known = {line["id"] for line in load()}
    assert live_ids() - known == set()
    assert len(live_ids()) > 100


def test_a_production_deployment_passes_every_line_checked_live(deployment):
    # when
    result = readiness(deployment)

    # then
    found = statuses(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(found) == live_ids()
    assert failing(result) == set()
    assert {i for i, status in found.items() if status == "SKIP"} <= IMAGE_LINES
    for line_id in (
        *("P1.1", "P1.2", "P1.3", "P1.4", "P1.8", "P1.9", "P1.10", "P1.12", "P1.14"),
        *("P1.17", "P1.18", "P1.23", "P3.17", "P3.18", "P5.12", "P5.14", "P6.11", "P6.16"),
        *("P9.8", "P10.4", "P10.18", "P11.8", "P11.9", "P11.13", "P12.15", "P12.19"),
    ):
        assert found[line_id] == "PASS", line_id
    assert settings.SECRET_KEY not in result.stdout + result.stderr
    assert re.search(r" PASS, 0 FAIL, \d+ SKIP of \d+ checklist lines", result.stdout)


def test_the_json_report_has_every_line_with_its_text_and_a_summary(deployment):
    # when
    result = readiness(deployment, "--json")

    # then stdout is the JSON document alone (the app's log lines went to stderr)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"url", "results", "summary"}
    assert document["url"] == deployment.web.base_url
    texts = {line["id"]: line["text"] for line in load()}
    ids = [line["id"] for line in document["results"]]
    assert set(ids) == live_ids() and len(ids) == len(set(ids))
    assert ids == [line["id"] for line in load() if line["id"] in live_ids()]  # checklist order
    for line in document["results"]:
        assert set(line) == {"id", "status", "detail", "text"}
        assert line["text"] == texts[line["id"]]
        assert line["status"] in {"PASS", "SKIP"} and line["detail"]
    counted = {
        key: sum(r["status"] == key.upper() for r in document["results"])
        for key in ("pass", "fail", "skip")
    }
    assert document["summary"] == counted


def test_debug_logs_never_reach_the_json_report_and_fail_the_log_level_lines(deployment):
    # when every library's debug lines are logged (to stdout, where the app logs)
    result = readiness(deployment, "--json", LOG_LEVEL="DEBUG")

    # then they all went to stderr, from every thread, and stdout is the JSON document alone
    assert "httpcore" in result.stderr
    document = json.loads(result.stdout)
    # and debug logging in production is itself a finding
    failed = {line["id"]: line for line in document["results"] if line["status"] == "FAIL"}
    assert "DEBUG" in failed["P6.3"]["detail"], failed
    assert all("log" in line["text"].lower() for line in failed.values()), failed
    assert result.returncode == 1


def test_redis_gone_fails_its_lines_quickly_and_shows_no_password(deployment):
    # given a REDIS_URL, with a password, where nothing listens
    password = secrets.token_urlsafe(12)
    dead_redis = f"redis://:{password}@127.0.0.1:{free_port()}/0"

    # when
    result = readiness(deployment, REDIS_URL=dead_redis)

    # then
    assert result.returncode == 1, result.stdout
    broken = failing(result)
    assert {"P1.23", "P5.1", "P5.12", "P5.17", "P11.13", "P11.16", "P12.20"} <= broken
    assert "Redis at redis://:***@127.0.0.1" in details(result)["P1.23"]
    assert statuses(result)["P1.9"] == "PASS"  # the web server itself is fine
    assert password not in result.stdout + result.stderr
    assert result.seconds < 45  # no broker retry loop


def test_a_server_without_x_frame_options_fails_the_clickjacking_lines(deployment):
    # given the same deployment's web, served without the X-Frame-Options middleware
    env = {**deployment.env, "DJANGO_SETTINGS_MODULE": "readiness.tests.without_frame_options"}
    server = start_server(env, deployment.work_dir / "no-frame-options")
    try:
        # when the report (with the real settings) checks that server
        result = readiness(deployment, url=server.base_url)
    finally:
        server.stop()

    # then only the lines of that header fail
    assert result.returncode == 1, result.stdout
    assert failing(result) == {"P1.14", "P10.6"}
    assert "X-Frame-Options is missing" in details(result)["P1.14"]


def test_a_server_that_never_answers_fails_its_lines_within_the_bound(deployment):
    # given a port that accepts connections and never says a word
    silent = SilentListener()
    try:
        # when
        result = readiness(deployment, url=f"http://127.0.0.1:{silent.port}")
    finally:
        silent.close()

    # then every request timed out on its own, and the run ended well within its bound
    assert result.returncode == 1, result.stdout
    assert "ReadTimeout" in details(result)["P6.8"]
    assert "timed out" in details(result)["P11.12"]
    assert statuses(result)["P11.13"] == "PASS"  # the rest of the deployment is fine
    assert result.seconds < 45


def test_an_unapplied_migration_fails_the_migration_lines(deployment):
    # given the latest core migration recorded as not applied
    app_label, name = MigrationLoader(None).graph.leaf_nodes("core")[0]
    record = (
        "import sys, django\ndjango.setup()\n"
        "from django.db import connection\n"
        "from django.db.migrations.recorder import MigrationRecorder\n"
        "getattr(MigrationRecorder(connection), sys.argv[1])(sys.argv[2], sys.argv[3])\n"
    )
    unapplied = run_python(record, "record_unapplied", app_label, name, env=deployment.env)
    assert unapplied.returncode == 0, unapplied.stderr
    try:
        # when
        result = readiness(deployment)
    finally:
        applied = run_python(record, "record_applied", app_label, name, env=deployment.env)
        assert applied.returncode == 0, applied.stderr

    # then
    assert result.returncode == 1, result.stdout
    assert failing(result) == {"P11.8", "P12.16"}
    assert f"1 migrations not applied: {app_label}.{name}" in details(result)["P11.8"]


def test_a_gunicorn_value_off_the_checklist_fails_its_line(deployment):
    # when
    result = readiness(deployment, GUNICORN_TIMEOUT="300")

    # then
    assert result.returncode == 1, result.stdout
    assert failing(result) == {"P3.5", "P7.12"}
    assert "timeout=300 (GUNICORN_TIMEOUT=300); the checklist says 120" in details(result)["P3.5"]


def test_inside_the_image_its_user_and_directories_are_checked(deployment):
    if not Path("/.dockerenv").exists() and not Path("/run/.containerenv").exists():
        pytest.skip("not in a container: the image lines are skipped there by design")

    # when the report runs where APP_DIR names this code, as in the image
    result = readiness(deployment, APP_DIR=str(PROJECT_DIR))

    # then the image lines are checked, and root is refused
    found = statuses(result)
    assert found["P2.6"] == ("FAIL" if os.getuid() == 0 else "PASS"), details(result)["P2.6"]
    assert found["P2.7"] == "PASS" and found["P2.8"] == "PASS", result.stdout


# --- The API ----------------------------------------------------------------------------------

_MAKE_USERS = """
import json, django
django.setup()
from django.contrib.auth.models import Permission
from accounts.tests.factories import UserFactory
from rest_framework_simplejwt.tokens import AccessToken
staff = UserFactory(is_staff=True, is_customer=False)
staff.user_permissions.add(Permission.objects.get(codename="view_readiness_report"))
other_staff = UserFactory(is_staff=True, is_customer=False)
customer = UserFactory()
print(json.dumps({"ids": [str(staff.pk), str(other_staff.pk), str(customer.pk)],
                  "staff": str(AccessToken.for_user(staff)),
                  "other_staff": str(AccessToken.for_user(other_staff)),
                  "customer": str(AccessToken.for_user(customer))}))
"""
_DELETE_USERS = """
import sys, django
django.setup()
from django.contrib.auth import get_user_model
get_user_model().objects.filter(pk__in=sys.argv[1:]).delete()
"""


@pytest.fixture(scope="module")
def people(deployment):
    """A staff member and a customer in the deployment's database, deleted afterwards."""
    made = run_python(_MAKE_USERS, env=deployment.env)
    assert made.returncode == 0, made.stderr
    people = json.loads(made.stdout.strip().splitlines()[-1])
    yield people
    deleted = run_python(_DELETE_USERS, *people["ids"], env=deployment.env)
    assert deleted.returncode == 0, deleted.stderr


def get_report(deployment, token: str | None) -> httpx.Response:
    headers = {**HTTPS, **({"Authorization": f"Bearer {token}"} if token else {})}
    return deployment.web.get("/api/v1/ops/readiness/", headers=headers, timeout=60)


def test_staff_read_the_report_the_server_makes_of_itself(deployment, people):
    # when
    response = get_report(deployment, people["staff"])

    # then the same report as --json, of the server's own address ($PORT), all passing
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    document = response.json()
    assert set(document) == {"url", "results", "summary"}
    assert document["url"] == f"http://127.0.0.1:{deployment.web.port}"
    assert {line["id"] for line in document["results"]} == live_ids()
    failures = [line for line in document["results"] if line["status"] == "FAIL"]
    assert document["summary"]["fail"] == 0, failures
    assert settings.SECRET_KEY not in response.text


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("other_staff", 403, "permission_denied"),
        ("customer", 403, "not_staff"),
        (None, 401, "not_authenticated"),
    ],
    ids=["staff-without-the-permission", "customer", "anonymous"],
)
def test_everyone_else_is_refused_the_report(deployment, people, who, status, code):
    # when
    response = get_report(deployment, people[who] if who else None)

    # then
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
