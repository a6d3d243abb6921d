"""SIGKILL a real worker in the middle of a task: the task runs again and its effect happens once.

Two ways a worker dies, two recovery paths (read from celery/worker/request.py and
kombu/transport/redis.py, then proven here):
- only the pool process dies (the kernel's OOM killer picks the big child): the worker's main
  process sees WorkerLostError and, with task_acks_late + task_reject_on_worker_lost, puts the
  message back on its queue at once; a new pool process runs it again. No dead letter.
- the whole worker dies (container OOM-killed, SIGKILL to every process): nobody is left to
  requeue. The message sits in Redis's "unacked" hash until the broker visibility timeout
  passes; then the next worker restores it to the queue (on start-up, then every
  unacked_restore_interval x unacked_restore_throttle seconds) and runs it. Production waits
  the hard time limit + 10 min; these tests shorten it with CELERY_VISIBILITY_TIMEOUT.
Either way the task body runs twice, so effects must be idempotent: effect_once writes its row
under a unique key, and the test counts one effect row for two attempts.

And the planned stop: a deploy sends SIGTERM. With REMAP_SIGTERM=SIGQUIT (Procfile.dev) Celery
gives running tasks worker_soft_shutdown_timeout (25 s) to finish, then cancels them and puts
their messages straight back on the queue, instead of the visibility-timeout wait above.
"""

import base64
import json
import os
import signal
import time
import uuid

import pytest
from django.db import connection

from core.models import DeadLetter
from core.tests.celery_tasks import effect_once
from devstack.celery import flush_broker, redis_client, start_worker
from devstack.wait import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

VISIBILITY_TIMEOUT = 3  # seconds, for these tests only; above the 1.5 s rerun below


@pytest.fixture
def workers(celery_tables, tmp_path):
    """Starts workers on demand; every one of them is killed when the test ends."""
    flush_broker()
    started = []

    def start(visibility_timeout=VISIBILITY_TIMEOUT):
        worker = start_worker(
            tmp_path, CELERY_VISIBILITY_TIMEOUT=str(visibility_timeout), REMAP_SIGTERM="SIGQUIT"
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def _attempt_pids(key: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM celery_test_attempt WHERE key = %s ORDER BY id", [key])
        return [pid for (pid,) in cursor.fetchall()]


def _effects(key: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, finished_at FROM celery_test_effect WHERE key = %s", [key])
        return cursor.fetchall()


@pytest.mark.checklist("P5.5")
def test_a_killed_pool_process_hands_its_task_back_and_the_effect_happens_once(workers):
    # given a worker busy with a task that has already written its effect
    worker = workers()
    key = f"child-{uuid.uuid4().hex}"
    result = effect_once.delay(key, 2.0)
    (first_pid,) = wait_for(lambda: _attempt_pids(key), 15, "the task to start")

    # when its pool process is SIGKILLed in the middle of the task
    os.kill(first_pid, signal.SIGKILL)

    # then the main process requeues it, a new pool process runs it again, and it completes
    wait_for(lambda: len(_effects(key)) == 1 and _effects(key)[0][1], 20, "the rerun to finish")
    pids = _attempt_pids(key)
    assert len(pids) == 2
    assert pids[1] != first_pid
    assert len(_effects(key)) == 1
    output = worker.output()
    assert "signal 9 (SIGKILL)" in output
    assert "WorkerLostError" in output
    worker.wait_for_output(f"{result.id}] succeeded", 5)
    # requeued, not failed: nothing for ops to retry
    assert not DeadLetter.objects.filter(task_id=result.id).exists()


@pytest.mark.checklist("P5.3")
def test_a_task_of_a_killed_worker_runs_on_a_new_worker_and_the_effect_happens_once(workers):
    # given a worker busy with a task that has already written its effect
    broker = redis_client()
    first = workers()
    key = f"worker-{uuid.uuid4().hex}"
    effect_once.delay(key, 1.5)
    (first_pid,) = wait_for(lambda: _attempt_pids(key), 15, "the task to start")

    # when the whole worker (main process and pool) is SIGKILLed, as by an OOM-killed container
    first.kill(signal.SIGKILL)

    # then the message is not lost: Redis still holds it as delivered but unacknowledged
    unacked = broker.zrange("unacked_index", 0, -1, withscores=True)
    assert len(unacked) == 1
    (tag, delivered_at) = unacked[0]
    assert broker.hexists("unacked", tag)
    assert broker.llen("default") == 0

    # when a new worker starts once the visibility timeout has passed
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))
    workers()

    # then the new worker restores the message and runs the task to the end, once more
    wait_for(lambda: len(_effects(key)) == 1 and _effects(key)[0][1], 20, "the rerun to finish")
    pids = _attempt_pids(key)
    assert len(pids) == 2
    assert pids[1] != first_pid
    assert len(_effects(key)) == 1
    wait_for(lambda: not broker.zcard("unacked_index"), 5, "the ack")


@pytest.mark.checklist("P8.7")
def test_a_deploy_sigterm_gives_the_task_the_soft_shutdown_then_requeues_it_at_once(workers):
    # given a worker with the production visibility timeout, busy with a task longer than the
    # 25 s soft shutdown
    broker = redis_client()
    worker = workers(visibility_timeout=0)  # 0: the default, hard time limit + 10 min
    key = f"deploy-{uuid.uuid4().hex}"
    result = effect_once.delay(key, 120.0)
    wait_for(lambda: _attempt_pids(key), 15, "the task to start")

    # when the platform stops it the way a deploy does: SIGTERM to the main process
    stopped_at = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    worker.process.wait(timeout=45)
    took = time.monotonic() - stopped_at

    # then the worker waited the soft shutdown, then put the message back on its queue itself
    output = worker.output()
    assert "Initiating Soft Shutdown, terminating in 25" in output
    assert "Restoring 1 unacknowledged message(s)" in output
    assert 25 <= took < 40, f"stopped in {took:.1f} s"
    assert broker.zcard("unacked_index") == 0
    assert broker.llen("default") == 1
    message = json.loads(broker.lindex("default", 0))
    assert message["headers"]["id"] == result.id
    assert json.loads(base64.b64decode(message["body"]))[0] == [key, 120.0]
