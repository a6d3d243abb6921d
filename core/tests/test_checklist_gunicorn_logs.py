"""A production gunicorn's own log lines, from start to stop: which stream, and what they say.

gunicorn_conf.py sends access lines to stdout and gunicorn's error log to stderr, and its
lifecycle hooks say when it starts, is ready, forks a worker, and exits; the
preloaded app logs its start-up summary (environment, DEBUG, hosts, database) to stdout.
"""

import json

import pytest
from django.conf import settings
from django.db import connections

from devstack.env import database_url, local_production_env
from devstack.web import start_server

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture(scope="module")
def stopped_server(django_db_setup, tmp_path_factory):
    """A production server that answered one request and was then stopped with SIGTERM."""
    env = local_production_env(
        DATABASE_URL=database_url(connections["default"].settings_dict),
        REDIS_URL=settings.REDIS_URL,
        ALLOWED_HOSTS="127.0.0.1,api.example.com",
    )
    server = start_server(env, tmp_path_factory.mktemp("gunicorn-logs"))
    try:
        assert server.get("/api/config/").status_code == 200
        server.wait_for_log("GET /api/config/ HTTP/1.1")
    finally:
        server.stop()
    assert server.process.returncode == 0, server.output()
    return server


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.checklist("P3.11", "P3.12", "P6.1")
def test_access_lines_go_to_stdout_and_gunicorns_log_to_stderr(stopped_server):
    stdout = _records(stopped_server.stdout())
    stderr = _records(stopped_server.stderr())

    access = [r for r in stdout if "GET /api/config/ HTTP/1.1" in r["message"]]
    assert access and {r["logger"] for r in access} <= {"uvicorn.access", "gunicorn.access"}
    assert not any("GET /api/config/" in r["message"] for r in stderr)
    assert {r["logger"] for r in stderr} >= {"gunicorn.error"}
    assert not any(r["logger"].endswith(".access") for r in stderr)


@pytest.mark.checklist("P3.14")
def test_lifecycle_hooks_log_start_ready_workers_and_exit(stopped_server):
    messages = [r["message"] for r in _records(stopped_server.stderr())]
    port = stopped_server.port

    def position(text: str) -> int:
        return next(i for i, message in enumerate(messages) if text in message)

    order = [
        f"starting gunicorn on 0.0.0.0:{port} with 1 workers",
        f"ready: listening on 0.0.0.0:{port}",
        "gunicorn stopped",
    ]
    assert [position(text) for text in order] == sorted(position(text) for text in order)
    # post_fork names the one worker, and the master logs its exit before its own
    started = [m for m in messages if m.startswith("worker ") and m.endswith(" started")]
    assert len(started) == 1, messages
    pid = started[0].split()[1]
    assert position(f"worker {pid} stopped") < position("gunicorn stopped"), messages


@pytest.mark.checklist("P6.7", "P7.24")
def test_the_startup_summary_names_environment_debug_hosts_and_database(stopped_server):
    summaries = [
        r
        for r in _records(stopped_server.stdout())
        if r["logger"] == "config.startup" and "web starting" in r["message"]
    ]
    database = connections["default"].settings_dict

    assert len(summaries) == 1
    message = summaries[0]["message"]
    assert summaries[0]["level"] == "INFO"
    for expected in (
        "env=production",
        "debug=False",
        "allowed_hosts=127.0.0.1,api.example.com",
        f"@{database['HOST'] or '127.0.0.1'}:",
        f"/{database['NAME']} ",
    ):
        assert expected in message, message
