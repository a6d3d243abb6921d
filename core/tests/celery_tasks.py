"""Tasks only the Celery tests use; test workers import this module with `-I`.

Their effects go to three plain tables (created and dropped by the tests, not by migrations)
so that a test can count what a worker process really did:
- celery_test_attempt: one row per run of a task body, with the pool process that ran it;
- celery_test_effect: the task's effect, keyed so that it can exist once at most;
- celery_test_switch: keys whose downstream is "back up" (fail_until_switched_on succeeds).
"""

import logging
import os
import time

import redis
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker.control import control_command
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS celery_test_attempt (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS celery_test_effect (
    key text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS celery_test_switch (key text PRIMARY KEY);
"""
DROP_TABLES = "DROP TABLE IF EXISTS celery_test_attempt, celery_test_effect, celery_test_switch"
# Redis list the ordering tasks append to, in the tests' own Redis database.
DONE_LIST = "celery-test:done"
# Queue of the test beat entry (core/tests/celery_beat_app.py); no worker consumes it.
BEAT_PROBE_QUEUE = "celery-test-beat-probe"


def _execute(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def _record_attempt(key: str) -> None:
    _execute("INSERT INTO celery_test_attempt (key, pid) VALUES (%s, %s)", [key, os.getpid()])


@shared_task
def effect_once(key: str, seconds: float) -> None:
    """Writes its effect idempotently first, then works `seconds`, then marks the effect done.

    Killed during the sleep and run again, the second run finds the effect already there: the
    unique key keeps it to one row, which is what makes redelivery safe.
    """
    _record_attempt(key)
    _execute("INSERT INTO celery_test_effect (key) VALUES (%s) ON CONFLICT (key) DO NOTHING", [key])
    time.sleep(seconds)
    _execute("UPDATE celery_test_effect SET finished_at = now() WHERE key = %s", [key])


@shared_task(
    autoretry_for=(ConnectionError,), max_retries=2, default_retry_delay=0.2, retry_jitter=False
)
def fail_until_switched_on(key: str) -> None:
    """Fails like an unreachable provider until the test switches `key` on."""
    _record_attempt(key)
    if not _execute("SELECT 1 FROM celery_test_switch WHERE key = %s", [key]):
        raise ConnectionError(f"downstream for {key} is down")
    _execute("INSERT INTO celery_test_effect (key) VALUES (%s) ON CONFLICT (key) DO NOTHING", [key])


@shared_task(soft_time_limit=1, time_limit=2)
def outlive_hard_time_limit(key: str) -> None:
    """A runaway: ignores its soft time limit, so the pool process is killed at the hard one."""
    _record_attempt(key)
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        time.sleep(30)


@shared_task(soft_time_limit=1, time_limit=10)
def stop_cleanly_at_soft_time_limit(key: str) -> str:
    """Well behaved: at its soft time limit it stops its work, records that, and returns."""
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        _record_attempt(key)
        return "stopped at the soft limit"
    return "never stopped"


@shared_task
def pool_process_pid() -> int:
    return os.getpid()


@shared_task
def log_marker(marker: str) -> None:
    logger.info("marker %s", marker)


@shared_task
def database_backend_pid() -> dict:
    """The pool process and the PostgreSQL backend this run used."""
    return {"pid": os.getpid(), "backend_pid": _execute("SELECT pg_backend_pid()")[0][0]}


@shared_task(bind=True, ignore_result=True)
def record_done(self, label: str, seconds: float) -> None:
    """Works `seconds`, then appends label@worker to DONE_LIST: the order tasks finished in."""
    time.sleep(seconds)
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.rpush(DONE_LIST, f"{label}@{self.request.hostname}")
    client.close()


@shared_task(ignore_result=True)
def beat_probe() -> None:
    """Sent by the test beat every second; the test counts the messages, no worker runs it."""


@control_command(args=[("seconds", float)], signature="<seconds>")
def block_main_thread(state, seconds: float) -> dict:
    """Holds the worker's main thread, as a read with no timeout once did after a Redis restart
    (core/tests/test_celery_broker_outage.py); SIGTERM then only sets a flag nobody reads."""
    time.sleep(seconds)
    return {"ok": "released"}
