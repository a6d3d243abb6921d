"""The Celery app: broker, reliability settings, queues, routes and the beat schedule."""

import os

from celery import Celery
from celery.signals import beat_init, task_postrun, worker_ready
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("delivery")
# CELERY_BROKER_URL, CELERY_RESULT_BACKEND and CELERY_TASK_ALWAYS_EAGER come from settings.
app.config_from_object("django.conf:settings", namespace="CELERY")

HARD_TIME_LIMIT = 3600
REDIS_TRANSPORT_OPTIONS = {
    # A late-acked task is handed to another worker if not acked within this window; it must
    # exceed the hard time limit or a long task would run twice.
    "visibility_timeout": HARD_TIME_LIMIT + 600,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    "retry_on_timeout": True,
    "health_check_interval": 60,
}

app.conf.update(
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=10,
    broker_heartbeat=60,
    broker_transport_options=REDIS_TRANSPORT_OPTIONS,
    result_backend_transport_options=REDIS_TRANSPORT_OPTIONS,
    redis_backend_health_check_interval=60,
    redis_socket_timeout=5,
    redis_socket_connect_timeout=5,
    result_expires=3600,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=HARD_TIME_LIMIT,
    task_soft_time_limit=3000,
    worker_max_tasks_per_child=100,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # On SIGTERM, give running tasks this long to finish before the cold shutdown requeues them.
    worker_soft_shutdown_timeout=25,
    worker_enable_soft_shutdown_on_idle=True,
    task_default_queue="default",
    task_queues=[Queue("high"), Queue("default"), Queue("low")],
    task_routes={
        "core.tasks.beat_heartbeat": {"queue": "high"},
    },
    beat_schedule={
        "beat-heartbeat": {
            "task": "core.tasks.beat_heartbeat",
            "schedule": 60.0,
            "options": {"expires": 50},
        },
    },
)
app.autodiscover_tasks()


@task_postrun.connect
def close_database_connections(**kwargs):
    """No connection outlives its task: a stale one would fail the next task instead."""
    from django.db import connections

    connections.close_all()


@worker_ready.connect
def log_worker_startup(**kwargs):
    from config.startup import log_startup_summary

    log_startup_summary("worker")


@beat_init.connect
def refuse_beat_off_primary(**kwargs):
    from django.conf import settings

    from config.startup import log_startup_summary

    if not settings.IS_PRIMARY:
        raise SystemExit(
            "Refusing to start celery beat: IS_PRIMARY is not 1. Run beat on the primary "
            "instance only, or the periodic tasks would run once per instance."
        )
    log_startup_summary("beat")
