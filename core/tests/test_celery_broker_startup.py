"""A Celery worker started while its broker is down (no entrypoint wait in front of it):
it keeps trying, runs tasks once Redis comes, and gives up after its retries if it never does.

Real worker processes and a throwaway redis-server started late, or never, on a free port.
"""

import uuid

import pytest

from config.celery import app as celery_app
from devstack.celery import CELERY, TASKS_MODULE, CeleryProcess, process_env
from devstack.env import local_production_env
from devstack.ports import LOCALHOST, free_port
from devstack.redis import RedisServer
from devstack.wait import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def worker_without_broker(tmp_path, redis_url: str, **env: str) -> CeleryProcess:
    """In production settings: elsewhere a Redis unreachable at start-up is replaced by an
    in-memory broker (REDIS_FALLBACK, for development), so no retry would be seen."""
    name = f"startup-{uuid.uuid4().hex[:8]}"
    production = local_production_env(
        REDIS_URL=redis_url, DATABASE_URL=process_env()["DATABASE_URL"], **env
    )
    return CeleryProcess(
        [
            *(CELERY, "-A", "config", "worker", "-Q", "default", "-n", f"{name}@%h"),
            *("--concurrency", "1", "--loglevel", "INFO", "-I", TASKS_MODULE),
            *("--without-mingle", "--without-gossip"),
        ],
        process_env(**production),
        tmp_path / f"{name}.log",
    )


@pytest.mark.checklist("P5.1")
def test_a_worker_started_before_redis_connects_when_it_comes_and_runs_tasks(tmp_path):
    # given a worker started while nothing listens on its broker's port
    redis = RedisServer(tmp_path / "redis")  # its port, not started yet
    worker = worker_without_broker(tmp_path, redis.url)
    try:
        wait_for(lambda: "Trying again in" in worker.output(), 20, "a failed first try")
        assert worker.process.poll() is None

        # when Redis comes up on that port
        redis.start()

        # then the worker connects, and runs a task sent to it
        wait_for(lambda: " ready." in worker.output(), 40, "the worker to be ready")
        marker = uuid.uuid4().hex
        with celery_app.connection_for_write(redis.url) as connection:
            celery_app.send_task(
                f"{TASKS_MODULE}.log_marker", args=[marker], queue="default", connection=connection
            )
        wait_for(lambda: f"marker {marker}" in worker.output(), 20, "the task to run")
    finally:
        worker.close()
        redis.kill()


@pytest.mark.checklist("P5.10")
def test_a_worker_gives_up_after_its_retries_when_redis_never_comes(tmp_path):
    # given a worker allowed 2 tries (10 in production: the same path, about 110 s long)
    port = free_port()
    worker = worker_without_broker(
        tmp_path,
        f"redis://{LOCALHOST}:{port}/0",
        CELERY_BROKER_CONNECTION_MAX_RETRIES="2",
    )
    try:
        # then it stops trying and exits with an error, rather than waiting for ever
        exit_code = worker.process.wait(timeout=60)
        output = worker.output()
        assert exit_code != 0, output[-2000:]
        assert output.count("Trying again in") == 2, output[-3000:]
        assert " ready." not in output
    finally:
        worker.close()
