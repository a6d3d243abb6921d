"""A worker that stops consuming is found by its canary, fails its probe, ends itself, and its
replacement runs every task it left waiting once (core/worker_liveness.py).

The rule is tested first on state files alone; then on real prefork workers of the project's
app: one whose consumer is made to stop taking messages (`cancel_consumer` on every queue it
consumes: the process, its pool and its control channel stay fine, as in the stall seen after a
Redis outage), one busy in every pool process for longer than the bound, and one whose Redis
is down for longer than the bound. The stalled one runs with the shipped bounds (a canary every
10 s, stalled after 60 s), so the test measures the time to replacement a deployment gets; the
others with 1 s and 5 s.
"""

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import SmsMessage
from accounts.services import sms_queue
from config.celery import app
from core.tests.celery_tasks import effect_once
from core.worker_liveness import (
    CANARY_HASH,
    FORGET_IN_REDIS_SECONDS,
    HARD_EXIT_MARGIN_SECONDS,
    POOL_KILL_MARGIN_SECONDS,
    CanaryWatchdog,
    WorkerState,
    child_pids,
    probe,
    process_alive,
    record_canary_ran,
    state_path,
    write_atomically,
)
from devstack.celery import (
    CELERY,
    TASKS_MODULE,
    CeleryProcess,
    flush_broker,
    process_env,
    redis_client,
)
from devstack.env import PROJECT_DIR
from devstack.redis import RedisServer
from devstack.wait import wait_for

RESPAWN = str(PROJECT_DIR / "scripts" / "respawn.sh")
MANAGE = str(PROJECT_DIR / "manage.py")
PYTHON = str(PROJECT_DIR / ".venv" / "bin" / "python")
INTERVAL, STALL_AFTER = 1.0, 5.0
WORKER_SOFT_SHUTDOWN = app.conf.worker_soft_shutdown_timeout
MSG91_PATH = "/api/v5/flow"


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def write_state(directory: Path, **fields) -> WorkerState:
    now = time.time()
    state = WorkerState(
        **{
            "node": "w@host",
            "pid": os.getpid(),
            "queues": ["default", "high", "low", "w@host.dq2"],
            "interval": INTERVAL,
            "stall_after": STALL_AFTER,
            "started_at": now - 100,
            "updated_at": now,
            **fields,
        }
    )
    write_atomically(state_path(directory, state.node), json.dumps(vars(state)))
    return state


# --- The probe's rule, on state files ----------------------------------------------------------


def test_a_worker_whose_canary_ran_is_alive_and_one_whose_canary_waits_with_a_free_pool_is_not(
    tmp_path,
):
    now = time.time()
    # given a canary sent 3 s ago that has not run yet: within the bound
    write_state(tmp_path, waiting_since=now - 3)
    alive, lines = probe(tmp_path, now=now)
    assert alive, lines
    # when it has waited past the bound, with no pool process busy
    write_state(tmp_path, waiting_since=now - STALL_AFTER - 1)
    alive, lines = probe(tmp_path, now=now)
    assert not alive and "stalled" in lines[0], lines
    # then a canary that ran after it was sent clears it (the watchdog has not looked yet)
    record_canary_ran(tmp_path, "w@host", now - 0.5)
    alive, lines = probe(tmp_path, now=now)
    assert alive and "last canary ran 0 s ago" in lines[0], lines


def test_a_worker_busy_in_every_pool_process_is_not_stalled_until_one_is_free_for_the_bound(
    tmp_path,
):
    now = time.time()
    # given a canary waiting 100 s while every pool process ran tasks until 2 s ago
    write_state(tmp_path, waiting_since=now - 100, busy_at=now - 2)
    assert probe(tmp_path, now=now)[0]
    # then it is stalled once a pool process has been free for the bound
    assert not probe(tmp_path, now=now + STALL_AFTER - 1)[0]


def test_the_probe_fails_for_a_dead_worker_a_quiet_watchdog_and_a_missing_state(tmp_path):
    now = time.time()
    write_state(tmp_path, pid=dead_pid())
    alive, lines = probe(tmp_path, node="w@host", now=now)
    assert not alive and "is not running" in lines[0], lines
    # a dead worker's file is skipped when no node is named, but then no worker is left
    alive, lines = probe(tmp_path, now=now)
    assert not alive and lines == [f"no running worker has state in {tmp_path}"]

    write_state(tmp_path, updated_at=now - STALL_AFTER - 1)
    alive, lines = probe(tmp_path, now=now)
    assert not alive and "watchdog silent" in lines[0], lines

    alive, lines = probe(tmp_path, node="other@host", now=now)
    assert not alive and "no state" in lines[0], lines


# --- /metrics ----------------------------------------------------------------------------------


def watchdog_of(node: str, directory: Path) -> CanaryWatchdog:
    worker = SimpleNamespace(app=app, hostname=node)
    return CanaryWatchdog(worker, directory=directory, interval=INTERVAL, stall_after=STALL_AFTER)


def test_a_stopping_worker_forgets_itself_and_does_not_wait_on_a_redis_that_never_answers(
    tmp_path,
):
    # given a worker's state file and its last canary in Redis (its watchdog not started: that
    # would give this test process a shutdown deadline of its own)
    node = f"forget-{uuid.uuid4().hex[:8]}@host"
    write_state(tmp_path, node=node)
    watchdog = watchdog_of(node, tmp_path)
    assert state_path(tmp_path, node).exists()
    client = redis_client()
    client.hset(CANARY_HASH, node, time.time())

    # when it forgets itself: it leaves no state file and no entry for /metrics
    watchdog.forget()
    assert not state_path(tmp_path, node).exists()
    assert client.hget(CANARY_HASH, node) is None

    # and when Redis takes the connection but never answers (a client without a read timeout,
    # as a name that resolves slowly is: getaddrinfo has none), the shutdown is not held
    with socket.create_server(("127.0.0.1", 0)) as black_hole:
        silent = redis.Redis(port=black_hole.getsockname()[1], socket_timeout=None)
        with mock.patch("core.health.redis_client", return_value=silent):
            started = time.monotonic()
            watchdog_of(node, tmp_path).forget()
            took = time.monotonic() - started
    assert took < FORGET_IN_REDIS_SECONDS + 1, took


def gauges(api_client) -> dict[tuple[str, str], float]:
    response = api_client.get("/metrics")
    assert response.status_code == 200
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name.startswith("celery_queue") or "canary" in sample.name:
                found[(sample.name, next(iter(sample.labels.values())))] = sample.value
    return found


@pytest.mark.checklist("P6.19")
@pytest.mark.django_db
def test_metrics_show_each_queues_depth_and_oldest_age_and_each_workers_last_canary(api_client):
    # given messages waiting in "low", the first published 1.5 s before the others
    flush_broker()
    app.send_task("core.tests.celery_tasks.log_marker", args=["a"], queue="low")
    time.sleep(1.5)
    app.send_task("core.tests.celery_tasks.log_marker", args=["b"], queue="low")
    # and one with a priority, which kombu keeps in a list of its own
    app.send_task("core.tests.celery_tasks.log_marker", args=["c"], queue="low", priority=9)
    redis_client().hset(CANARY_HASH, "worker@host", 1_800_000_000.5)
    try:
        # when /metrics is scraped
        found = gauges(api_client)
    finally:
        flush_broker()

    # then the queue's depth and its oldest message's age (the first one's), and the canary
    assert found[("celery_queue_length", "low")] == 3
    assert found[("celery_queue_length", "high")] == 0
    assert 1.5 <= found[("celery_queue_oldest_message_age_seconds", "low")] < 30
    assert found[("celery_queue_oldest_message_age_seconds", "high")] == 0
    assert found[("celery_worker_canary_last_run_timestamp_seconds", "worker@host")] == (
        1_800_000_000.5
    )


# --- Real workers ------------------------------------------------------------------------------


def worker_args(name: str, *extra: str) -> list[str]:
    return [
        *(CELERY, "-A", "config", "worker", "-Q", "high,default,low"),
        *("-n", f"{name}@%h", "--concurrency", "1", "--loglevel", "INFO"),
        *("-I", TASKS_MODULE, "--without-mingle", "--without-gossip", *extra),
    ]


def liveness_env(directory: Path, *, shipped_bounds: bool = False, **extra: str) -> dict[str, str]:
    """A worker's environment; with the 1 s canary and 5 s bound unless `shipped_bounds`."""
    if not shipped_bounds:
        extra.update(
            WORKER_CANARY_INTERVAL_SECONDS=str(INTERVAL), WORKER_STALL_SECONDS=str(STALL_AFTER)
        )
    return process_env(WORKER_LIVENESS_DIR=str(directory), REMAP_SIGTERM="SIGQUIT", **extra)


@dataclass
class WatchedWorker:
    process: CeleryProcess
    directory: Path
    node: str

    def alive(self) -> tuple[bool, list[str]]:
        return probe(self.directory, self.node)


@pytest.fixture
def watched_worker(tmp_path):
    """Starts a worker (1 s canary, 5 s bound) and waits for its first canary; closed after."""
    started = []

    def start(prefix: str, **env: str) -> WatchedWorker:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        directory = tmp_path / name
        process = CeleryProcess(
            worker_args(name), liveness_env(directory, **env), tmp_path / f"{name}.log"
        )
        started.append(process)
        process.wait_for_output(" ready.", 60)
        worker = WatchedWorker(process, directory, f"{name}@{socket.gethostname()}")
        wait_for(lambda: worker.alive()[0], 15, "the first canary to run")
        return worker

    yield start
    for process in started:
        process.close()


def worker_alive_command(directory: Path, node: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, MANAGE, "worker_alive", "--node", node],
        env=process_env(WORKER_LIVENESS_DIR=str(directory)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def attempts(key: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM celery_test_attempt WHERE key = %s", [key])
        return cursor.fetchone()[0]


@pytest.mark.checklist("P6.13", "P6.14")
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_stalled_worker_fails_its_probe_ends_itself_and_its_replacement_runs_each_task_once(
    celery_tables, tmp_path, httpserver
):
    # given a worker as deployed (prefork, late acks, prefetch 1, 100 tasks per child) under
    # respawn.sh (make run's restart policy), sending its SMS through a fake MSG91
    httpserver.expect_request(MSG91_PATH, method="POST").respond_with_json(
        {"type": "success", "message": "msg-1"}
    )
    flush_broker()
    directory = tmp_path / "liveness"
    name = f"stall-{uuid.uuid4().hex[:8]}"
    node = f"{name}@{socket.gethostname()}"
    env = liveness_env(
        directory,
        shipped_bounds=True,
        SMS_PROVIDER="msg91",
        MSG91_BASE_URL=httpserver.url_for("/"),
        MSG91_AUTH_KEY="test-auth-key",
        MSG91_OTP_TEMPLATE_ID="tmpl-login-otp",
    )
    worker = CeleryProcess([RESPAWN, *worker_args(name)], env, tmp_path / f"{name}.log")
    try:
        worker.wait_for_output(" ready.", 60)
        wait_for(lambda: probe(directory, node)[0], 15, "the first canary to run")
        healthy = worker_alive_command(directory, node)
        assert healthy.returncode == 0 and "consuming" in healthy.stdout, healthy

        # when its consumer stops taking messages from every queue, its own included, while
        # the process, its pool and its control channel stay up
        for queue in ("high", "default", "low", f"{node}.dq2"):
            assert app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=5)
        stalled_at = time.monotonic()
        # and work is queued for it: tasks on every queue, and an SMS
        keys = {queue: f"{queue}-{uuid.uuid4().hex}" for queue in ("high", "default", "low")}
        for queue, key in keys.items():
            effect_once.apply_async(args=[key, 0.0], queue=queue)
        with override_settings(SMS_PROVIDER="msg91"):  # the row names the worker's provider
            sms = sms_queue(phone="+919812345678", body="Your code is 123456", params={"otp": "1"})
        # which it leaves waiting, though a Celery ping answers: the probe below sees what a
        # ping cannot
        assert app.control.ping(destination=[node], timeout=3), "the control channel answers"
        assert not any(attempts(key) for key in keys.values())

        # then the probe fails within the bound (plus a canary interval and a tick) ...
        wait_for(
            lambda: not probe(directory, node)[0],
            settings.WORKER_STALL_SECONDS + settings.WORKER_CANARY_INTERVAL_SECONDS + 3,
            "the probe to fail",
        )
        detected_within = time.monotonic() - stalled_at
        failing = worker_alive_command(directory, node)
        assert failing.returncode == 1 and "stalled" in failing.stdout, failing

        # and the worker ends itself, respawn.sh starts it again, and every task runs once
        worker.wait_for_output("stalled: a canary has waited", 10)
        worker.wait_for_output("starting it again", 60)
        wait_for(
            lambda: (
                all(attempts(key) for key in keys.values())
                and SmsMessage.objects.get(pk=sms.pk).status == SmsMessage.Status.SENT
            ),
            60,
            "the replacement to run the waiting tasks",
        )
        replaced_within = time.monotonic() - stalled_at
        print(
            f"\n[stall] probe failed {detected_within:.1f} s after the stall; every waiting task"
            f" ran {replaced_within:.1f} s after it"
        )
        assert replaced_within < 120
        time.sleep(2)  # room for a second run, were there one
        assert {key: attempts(key) for key in keys.values()} == dict.fromkeys(keys.values(), 1)
        assert [request.path for request, _ in httpserver.log] == [MSG91_PATH]
        wait_for(lambda: probe(directory, node)[0], 15, "the new worker's canary")
        assert worker.output().count(" ready.") == 2
    finally:
        worker.close()
        httpserver.clear()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_busy_in_every_pool_process_past_the_bound_is_not_called_stalled(
    celery_tables, watched_worker
):
    # given a worker with one pool process
    flush_broker()
    worker = watched_worker("busy")

    # when a task keeps that process busy for twice the bound
    key = f"busy-{uuid.uuid4().hex}"
    effect_once.apply_async(args=[key, 2 * STALL_AFTER], queue="default")
    wait_for(lambda: attempts(key), 10, "the long task to start")
    verdicts = []
    while not _finished(key):
        verdicts.append(worker.alive())
        time.sleep(0.5)

    # then the probe passed throughout, with a canary waiting, and the worker lives on
    assert verdicts and all(alive for alive, _ in verdicts), verdicts
    assert any("one waiting" in lines[0] for _, lines in verdicts), verdicts
    wait_for(lambda: "one waiting" not in worker.alive()[1][0], 10, "the canary to run")
    assert worker.process.process.poll() is None
    assert "stalled" not in worker.process.output()


def _finished(key: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT finished_at FROM celery_test_effect WHERE key = %s", [key])
        row = cursor.fetchone()
    return bool(row and row[0])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_redis_outage_past_the_bound_is_not_called_a_stall(tmp_path, watched_worker):
    # given a worker on a Redis of its own
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    try:
        worker = watched_worker("outage", REDIS_URL=redis_server.url)

        # when Redis is down for twice the bound
        redis_server.kill()
        down_until = time.monotonic() + 2 * STALL_AFTER
        verdicts = []
        while time.monotonic() < down_until:
            verdicts.append(worker.alive())
            time.sleep(0.5)
        redis_server.start()

        # then the probe passed throughout and the worker was not shut down
        assert all(alive for alive, _ in verdicts), [v for v in verdicts if not v[0]]
        assert "cannot send a canary" in worker.process.output()
        assert worker.process.process.poll() is None
        assert "stalled" not in worker.process.output()
    finally:
        redis_server.kill()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_main_thread_never_returns_is_killed_with_its_pool(watched_worker):
    # given a worker and its pool process
    flush_broker()
    worker = watched_worker("blocked")
    pool = child_pids(worker.process.pid)
    assert pool

    # when its main thread stops returning to the event loop
    app.control.broadcast(
        "block_main_thread", arguments={"seconds": 600}, destination=[worker.node], reply=False
    )

    # then the probe fails, the watchdog's SIGTERM cannot end the worker (Celery's handler only
    # sets a flag for that loop), so the watchdog kills the pool and exits
    wait_for(lambda: not worker.alive()[0], STALL_AFTER + 4, "the probe to fail")
    hard_exit_after = app.conf.worker_soft_shutdown_timeout + HARD_EXIT_MARGIN_SECONDS
    assert worker.process.process.wait(timeout=INTERVAL + 2 + hard_exit_after + 10) == 70
    worker.process.wait_for_output("did not shut down", 1)
    assert not [pid for pid in pool if process_alive(pid)], pool


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_shutdown_signal_ends_a_worker_whose_main_thread_is_stuck_before_the_platform_must(
    watched_worker,
):
    # given a worker with the shipped bounds (its stall would be found only after 60 s) whose
    # main thread stops returning: Python would run Celery's SIGTERM handler in that thread
    flush_broker()
    worker = watched_worker("stuck", shipped_bounds=True)
    pool = child_pids(worker.process.pid)
    assert pool
    app.control.broadcast(
        "block_main_thread", arguments={"seconds": 600}, destination=[worker.node], reply=False
    )
    wait_for(
        lambda: not app.control.ping(destination=[worker.node], timeout=0.5), 10, "a stuck loop"
    )

    # when the platform stops it
    stopped_at = time.monotonic()
    os.kill(worker.process.pid, signal.SIGTERM)

    # then the watchdog, counting from the signal, logs where each thread is, kills the pool
    # and exits: inside the 45 s every platform gives before its SIGKILL
    code = worker.process.process.wait(timeout=WORKER_SOFT_SHUTDOWN + HARD_EXIT_MARGIN_SECONDS + 10)
    took = time.monotonic() - stopped_at
    print(f"\n[stuck] exit {code} {took:.1f} s after SIGTERM")
    assert code == 70
    assert took > WORKER_SOFT_SHUTDOWN + POOL_KILL_MARGIN_SECONDS - 1
    assert took < WORKER_SOFT_SHUTDOWN + HARD_EXIT_MARGIN_SECONDS + 3
    output = worker.process.output()
    assert "has not ended 35 s after its shutdown began" in output
    assert "--- thread MainThread" in output and "block_main_thread" in output
    assert "did not shut down" in output and "stalled" not in output
    assert not [pid for pid in pool if process_alive(pid)], pool
