"""The Celery configuration is what the checklist asks for, under Celery 5.7's real names.

Celery ignores a misspelt setting without a word, so each one is checked against the option
table Celery itself validates with (celery.app.defaults), then read back from the loaded app,
and, where it can be, from the objects that act on it (task classes, the broker channel).
The behaviour behind them is proven by the worker/beat tests in this directory.
"""

import os
import secrets
import subprocess
import sys
import threading
import uuid

import pytest
from celery.app.defaults import NAMESPACES, flatten
from django.core.cache import cache

from config.celery import HARD_TIME_LIMIT, app
from core import health
from core.health import BEAT_HEARTBEAT_KEY
from core.tasks import beat_heartbeat

CELERY_OPTIONS = {name for name, _ in flatten(NAMESPACES)}
# Read by others than Celery's option table: the result backends read the first two with
# conf.get(); celery-redbeat reads the redbeat_* ones.
OPTIONS_READ_ELSEWHERE = {
    "redis_backend_health_check_interval",
    "result_backend_thread_safe",
    "redbeat_redis_url",
    "redbeat_redis_options",
    "redbeat_key_prefix",
    "redbeat_lock_timeout",
}

EXPECTED = {
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": 10,
    "broker_heartbeat": 60,
    "result_expires": 3600,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_time_limit": 3600,
    "task_soft_time_limit": 3000,
    "worker_max_tasks_per_child": 100,
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "worker_soft_shutdown_timeout": 25,
    "task_default_queue": "default",
    "beat_scheduler": "core.beat:Scheduler",
    "beat_max_loop_interval": 5,
    "redbeat_lock_timeout": 30,
    "redis_backend_health_check_interval": 60,
    "result_backend_thread_safe": True,
}

PERIODIC = {
    # entry: (task, queue)
    "beat-heartbeat": ("core.tasks.beat_heartbeat", "high"),
    "sweep-stale-offers": ("delivery.tasks.sweep_stale_offers", "high"),
    "set-idle-riders-offline": ("riders.tasks.set_idle_riders_offline", "default"),
    "reconcile-pending-payments": ("payments.tasks.reconcile_pending_payments", "low"),
    "purge-expired-records": ("core.tasks.purge_expired_records", "low"),
}


# The checklist lines (checklist/lines.toml) that each setting's value proves.
CHECKLIST_LINES = {
    "broker_connection_retry_on_startup": ["P5.1"],
    "result_expires": ["P5.2"],
    "task_acks_late": ["P5.3"],
    "worker_prefetch_multiplier": ["P5.4"],
    "task_reject_on_worker_lost": ["P5.5"],
    "broker_heartbeat": ["P5.6"],
    "task_time_limit": ["P5.7", "P9.21"],
    "task_soft_time_limit": ["P5.8", "P9.21"],
    "worker_max_tasks_per_child": ["P5.9"],
    "broker_connection_max_retries": ["P5.10"],
}


@pytest.mark.parametrize(
    "option",
    [
        pytest.param(option, marks=pytest.mark.checklist(*CHECKLIST_LINES[option], configured=True))
        if option in CHECKLIST_LINES
        else option
        for option in sorted(EXPECTED)
    ],
)
def test_each_setting_has_a_real_name_and_its_value(option):
    assert option in CELERY_OPTIONS | OPTIONS_READ_ELSEWHERE, f"{option} is not a Celery option"
    assert app.conf[option] == EXPECTED[option]


@pytest.mark.checklist("P5.1", "P5.2", "P7.6", configured=True)
def test_broker_and_results_use_redis_url(settings):
    assert app.conf.broker_url == settings.REDIS_URL
    assert app.conf.result_backend == settings.REDIS_URL
    assert app.conf.redbeat_redis_url == settings.REDIS_URL


@pytest.mark.checklist("P5.3", "P5.5", configured=True)
def test_every_task_acks_late_and_is_requeued_when_its_worker_is_lost():
    app.loader.import_default_modules()
    for name in [task for task, _ in PERIODIC.values()]:
        task = app.tasks[name]
        assert task.acks_late is True
        assert task.reject_on_worker_lost is True


@pytest.mark.checklist("P5.6", configured=True)
def test_the_broker_channel_uses_a_visibility_timeout_above_the_hard_time_limit():
    # The tests' own environment does not shorten it (only the worker-loss test's workers do).
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert channel.visibility_timeout == HARD_TIME_LIMIT + 600
        assert channel.health_check_interval == 60
        assert channel.socket_timeout == 5
    assert not connection.supports_heartbeats  # why broker_heartbeat does nothing on Redis


@pytest.mark.checklist("P5.14", "P9.19", configured=True)
def test_each_queue_has_its_own_routing_key():
    # A shared key would copy every message into all three queues.
    assert {queue.name: queue.routing_key for queue in app.conf.task_queues} == {
        "high": "high",
        "default": "default",
        "low": "low",
    }


@pytest.mark.checklist("P11.3")
@pytest.mark.checklist("P5.11", "P5.13", "P5.14", "P9.20", configured=True)
def test_five_periodic_tasks_are_registered_routed_and_expire_before_their_next_run():
    app.loader.import_default_modules()
    schedule = app.conf.beat_schedule
    assert set(schedule) == set(PERIODIC)
    for entry_name, (task_name, queue) in PERIODIC.items():
        entry = schedule[entry_name]
        assert entry["task"] == task_name
        assert task_name in app.tasks, f"{task_name} is not a registered task"
        assert app.amqp.router.route({}, task_name)["queue"].name == queue
        assert 0 < entry["options"]["expires"] < entry["schedule"]


@pytest.mark.checklist("P5.2")
def test_a_task_result_is_kept_in_redis_for_one_hour():
    # when the result backend stores a task's result
    task_id = f"checklist-{uuid.uuid4().hex}"
    app.backend.store_result(task_id, {"answer": 42}, "SUCCESS")
    try:
        # then it sits in Redis under the task's key, and Redis forgets it after an hour
        key = app.backend.get_key_for_task(task_id)
        ttl = app.backend.client.ttl(key)
        assert 3600 - 5 <= ttl <= 3600
        # disable_sync_subtasks=False: Celery's "inside a task" flag is process-wide, and an
        # eager task another test left running in a thread of this process sets it
        assert app.AsyncResult(task_id).get(timeout=5, disable_sync_subtasks=False) == {
            "answer": 42
        }
    finally:
        app.backend.forget(task_id)


def test_a_task_queued_from_a_new_thread_uses_the_process_result_backend():
    # Each ASGI request runs in a thread of its own; a backend per thread would build a Redis
    # client for every request that queues a task.
    seen = []

    def result_of_a_task_queued_here():
        seen.append(beat_heartbeat.AsyncResult(uuid.uuid4().hex).backend)

    for _ in range(2):
        thread = threading.Thread(target=result_of_a_task_queued_here)
        thread.start()
        thread.join()

    assert len(seen) == 2 and seen[0] is seen[1] is app.backend


@pytest.mark.checklist("P5.12")
def test_beat_sends_the_heartbeat_every_minute_and_health_reads_it(settings):
    entry = app.conf.beat_schedule["beat-heartbeat"]
    assert (entry["task"], entry["schedule"]) == ("core.tasks.beat_heartbeat", 60.0)
    # one late heartbeat is not yet "stale"
    assert entry["schedule"] < settings.BEAT_HEARTBEAT_MAX_AGE_SECONDS
    cache.delete(BEAT_HEARTBEAT_KEY)
    try:
        assert health.check_celery_beat() == health.UNKNOWN

        # when the task runs
        beat_heartbeat.apply()

        # then /health/'s beat check sees it
        assert health.check_celery_beat() == health.OK
    finally:
        cache.delete(BEAT_HEARTBEAT_KEY)


@pytest.mark.slow
def test_production_refuses_a_visibility_timeout_not_above_the_hard_time_limit(settings):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_ENV": "production",
        "DJANGO_ENV_FILE": "",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "api.example.com",
        "CORS_ALLOWED_ORIGINS": "https://app.example.com",
        "DATABASE_URL": "postgis://delivery:delivery@127.0.0.1:5432/delivery",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_VISIBILITY_TIMEOUT": "600",
    }

    finished = subprocess.run(
        [sys.executable, "-c", "import config.celery"],  # what `celery -A config` loads
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert finished.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT=600 must exceed the task hard time limit" in finished.stderr
