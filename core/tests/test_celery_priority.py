"""A high-priority task is not stuck behind 100 slow low-priority ones.

What Celery + kombu's Redis transport really do (kombu/transport/redis.py): a worker issues
one BRPOP over all its queues, in a round-robin order that moves the queue it last received
from to the back; with prefetch 1 and late acks it takes no new message while its one task
runs. So:
- a worker consuming high,default,low picks a waiting high task as its NEXT task: the queued
  low tasks never delay it, but the low task already running does, for as long as it runs
  (up to the hard time limit);
- hence the deployment (Procfile.dev): one worker consumes only "high", so a high task starts
  at once even while every other worker is deep in long low tasks.
Both are measured here against 100 low tasks.
"""

import time

import pytest

from core.tests.celery_tasks import DONE_LIST, record_done
from devstack.celery import flush_broker, redis_client, start_worker
from devstack.wait import wait_for

pytestmark = [pytest.mark.slow]

LOW_TASKS = 100


@pytest.fixture
def workers(tmp_path):
    flush_broker()
    started = []

    def start(queues):
        started.append(start_worker(tmp_path, queues=queues))
        return started[-1]

    yield start
    for worker in started:
        worker.close()


def _done() -> list[str]:
    return [item.decode() for item in redis_client().lrange(DONE_LIST, 0, -1)]


def _queue_low_tasks(seconds: float) -> None:
    for number in range(LOW_TASKS):
        record_done.apply_async(args=[f"low-{number}", seconds], queue="low")


@pytest.mark.checklist("P5.4", "P5.14", "P9.19")
def test_one_worker_for_all_queues_runs_a_high_task_next_not_after_the_queued_low_ones(
    django_db_setup, workers
):
    # given a worker for all three queues working through 100 queued half-second low tasks
    workers("high,default,low")
    _queue_low_tasks(0.5)
    wait_for(lambda: len(_done()) >= 2, 20, "the low tasks to be under way")

    # when a high task is queued
    lows_done_before = len(_done())
    queued_at = time.monotonic()
    record_done.apply_async(args=["high", 0], queue="high")

    # then it runs as soon as the low task in hand is finished, ahead of the ~95 queued ones
    wait_for(lambda: any(item.startswith("high@") for item in _done()), 5, "high")
    waited = time.monotonic() - queued_at
    done = _done()
    position = next(index for index, item in enumerate(done) if item.startswith("high@"))
    # the low task running when it was queued (and one taken in the same instant, at most)
    assert position - lows_done_before <= 2, done[: position + 1]
    assert waited < 2.0, f"high waited {waited:.1f} s"  # 100 x 0.5 s would be 50 s
    assert redis_client().llen("low") >= LOW_TASKS - 10


@pytest.mark.checklist("P5.14", "P9.19")
def test_a_worker_for_the_high_queue_runs_a_high_task_while_the_others_are_busy(
    django_db_setup, workers
):
    # given the deployment: a worker for all queues deep in long low tasks, and one for high
    general = workers("high,default,low")
    high_only = workers("high")
    _queue_low_tasks(5.0)
    general.wait_for_output("core.tests.celery_tasks.record_done[", 10)

    # when a high task is queued
    queued_at = time.monotonic()
    record_done.apply_async(args=["high", 0], queue="high")

    # then the high worker runs it at once, without waiting for the running 5 s low task
    wait_for(lambda: any(item.startswith("high@") for item in _done()), 5, "high")
    waited = time.monotonic() - queued_at
    assert waited < 2.0, f"high waited {waited:.1f} s"
    assert _done() == [f"high@{high_only.node}"]  # by the high worker, before any low task
    assert redis_client().llen("low") >= LOW_TASKS - 2
