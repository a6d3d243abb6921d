"""The Celery app: broker, reliability settings, queues, routes and the beat schedule."""

import contextlib
import logging
import os
import time

from celery import Celery
from celery.signals import (
    beat_init,
    before_task_publish,
    task_failure,
    task_postrun,
    worker_ready,
)
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from core.worker_liveness import PUBLISHED_AT_HEADER, CanaryWatchdogStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

app = Celery("delivery")
# CELERY_BROKER_URL, CELERY_RESULT_BACKEND and CELERY_TASK_ALWAYS_EAGER come from settings.
app.config_from_object("django.conf:settings", namespace="CELERY")

HARD_TIME_LIMIT = 3600
# A late-acked task is handed to another worker if not acked within this window; it must
# exceed the hard time limit or a long task would run twice. It is also how long a task whose
# whole worker was killed (OOM, SIGKILL) waits before another worker runs it again.
VISIBILITY_TIMEOUT = settings.BROKER_VISIBILITY_TIMEOUT_SECONDS or HARD_TIME_LIMIT + 600
if VISIBILITY_TIMEOUT <= HARD_TIME_LIMIT and settings.IS_PRODUCTION:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT={VISIBILITY_TIMEOUT} must exceed the task hard time limit "
        f"({HARD_TIME_LIMIT} s), or tasks running longer than it would run twice."
    )
REDIS_TRANSPORT_OPTIONS = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    # Off on purpose (the cache keeps it on): with it, a worker could stall for good after a
    # Redis restart (4 of 20 short outages under child replacement, 0 of 20 without;
    # core/tests/test_celery_broker_outage.py). kombu reads its remote-control pub/sub socket
    # with no timeout; finding that socket closed, redis-py's one retry reconnected it and read
    # again, with no timeout, on a new connection subscribed to nothing, so the worker's main
    # thread waited in recv() forever. Without the retry the read raises and the consumer
    # reconnects everything, as after any other connection loss.
    "retry_on_timeout": False,
    "health_check_interval": 60,
}

app.conf.update(
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=settings.CELERY_BROKER_CONNECTION_MAX_RETRIES,
    # AMQP heartbeats; kombu's Redis transport implements none (heartbeats=False), so on Redis
    # a dead connection is found by health_check_interval and the socket timeouts above.
    broker_heartbeat=60,
    broker_transport_options=REDIS_TRANSPORT_OPTIONS,
    result_backend_transport_options=REDIS_TRANSPORT_OPTIONS,
    redis_backend_health_check_interval=60,
    redis_socket_timeout=5,
    redis_socket_connect_timeout=5,
    result_expires=3600,
    # One result backend for the process, not one per thread: the web serves each request in a
    # thread of its own (ASGI's thread-sensitive context), and a backend per thread is a Redis
    # client and pool built for every request that queues a task (2.5 ms of a booking on the
    # development VM). redis-py's client is thread safe; nothing in the web waits on a result,
    # the one use of the backend's single pub/sub consumer.
    result_backend_thread_safe=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=HARD_TIME_LIMIT,
    task_soft_time_limit=3000,
    worker_max_tasks_per_child=100,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Soft shutdown: running tasks get this long to finish, then the cold shutdown puts their
    # messages back on the queue at once. Celery applies it to SIGQUIT only; SIGTERM (what a
    # deploy sends) takes this path only with REMAP_SIGTERM=SIGQUIT in the worker's environment
    # (read by billiard before this file loads: set it in the Procfile / container, not .env).
    # Without it SIGTERM waits for tasks with no limit, the platform SIGKILLs the worker, and
    # its tasks wait out the visibility timeout.
    worker_soft_shutdown_timeout=25,
    worker_enable_soft_shutdown_on_idle=True,
    # Each worker also consumes a queue of its own, "<node>.dq2": its canary goes there
    # (core/worker_liveness.py).
    worker_direct=True,
    task_default_queue="default",
    # Each queue needs its own routing key: with a shared key, the direct exchange would copy
    # every message into all three queues and each task would run three times.
    task_queues=[Queue(name, routing_key=name) for name in ("high", "default", "low")],
    # high: the rider/customer is waiting (dispatch, SMS); low: bulk and housekeeping. A worker
    # consuming only "high" (Procfile.dev) keeps these moving while long low tasks run.
    task_routes={
        "core.tasks.beat_heartbeat": {"queue": "high"},
        "delivery.tasks.sweep_stale_offers": {"queue": "high"},
        "riders.tasks.set_idle_riders_offline": {"queue": "default"},
        "payments.tasks.reconcile_pending_payments": {"queue": "low"},
        "core.tasks.purge_expired_records": {"queue": "low"},
        "accounts.tasks.send_sms": {"queue": "high"},
        "payments.tasks.process_webhook_event": {"queue": "high"},
        "payments.tasks.send_refund": {"queue": "high"},
        "delivery.tasks.dispatch_order": {"queue": "high"},
        "delivery.tasks.rematch_rider": {"queue": "high"},
        "delivery.tasks.expire_offers_for_order": {"queue": "high"},
    },
    # Every entry expires before its next run, so a backlog never replays a pile of stale runs.
    beat_schedule={
        "beat-heartbeat": {
            "task": "core.tasks.beat_heartbeat",
            "schedule": float(settings.BEAT_HEARTBEAT_INTERVAL_SECONDS),
            "options": {"expires": settings.BEAT_HEARTBEAT_INTERVAL_SECONDS * 5 / 6},
        },
        "sweep-stale-offers": {
            "task": "delivery.tasks.sweep_stale_offers",
            "schedule": 10.0,
            "options": {"expires": 9},
        },
        "set-idle-riders-offline": {
            "task": "riders.tasks.set_idle_riders_offline",
            "schedule": 60.0,
            "options": {"expires": 50},
        },
        "reconcile-pending-payments": {
            "task": "payments.tasks.reconcile_pending_payments",
            "schedule": 600.0,
            "options": {"expires": 540},
        },
        "purge-expired-records": {
            "task": "core.tasks.purge_expired_records",
            "schedule": 3600.0,
            "options": {"expires": 1800},
        },
    },
    # Beat keeps its schedule in Redis and holds a Redis lock while it runs: a second beat
    # started by mistake waits for the lock (retrying every beat_max_loop_interval) instead of
    # sending every task twice, and takes over within redbeat_lock_timeout if the first dies.
    # core.beat.Scheduler is redbeat's, made to outlive a Redis outage or restart.
    beat_scheduler="core.beat:Scheduler",
    redbeat_redis_url=settings.REDIS_URL,
    redbeat_redis_options={
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
        "retry_on_timeout": True,
        "health_check_interval": 60,
    },
    redbeat_key_prefix="delivery:redbeat",
    beat_max_loop_interval=5,
    redbeat_lock_timeout=30,
)
app.autodiscover_tasks()
app.steps["worker"].add(CanaryWatchdogStep)


@before_task_publish.connect
def stamp_publish_time(headers=None, **kwargs):
    """Every message says when it was published: /metrics reports each queue's oldest age."""
    if headers is not None:
        headers.setdefault(PUBLISHED_AT_HEADER, time.time())


@task_postrun.connect
def close_database_connections(task=None, **kwargs):
    """No connection outlives its task: a stale one would fail the next task instead.

    Not for tasks run inline (eager): they share the caller's connection and transaction.
    """
    from django.db import connections

    if task is not None and task.request.is_eager:
        return
    connections.close_all()


@task_failure.connect
def record_dead_letter(
    sender=None, task_id=None, exception=None, args=None, kwargs=None, einfo=None, **extra
):
    """A task that failed for good (retries used up, or none) becomes a DeadLetter row.

    Celery sends task_failure only for the final failure: an autoretry or self.retry() sends
    task_retry instead, and a task requeued because its worker was lost sends neither. It runs
    in the pool process for ordinary failures and in the worker's main process for hard time
    limits (then without the task's request: no request id, queue from the routes), which is
    why the connection is closed here and not left to task_postrun.
    """
    from django.db import connections
    from django_guid import get_guid
    from django_guid.config import settings as guid_settings

    from core.services import dead_letter_record

    request = sender.request
    name = getattr(sender, "name", "") or ""
    try:
        queue = (request.delivery_info or {}).get("routing_key") or ""
        if not queue:
            queue = app.amqp.router.route({}, name)["queue"].name
        letter = dead_letter_record(
            task_name=name,
            task_id=task_id or request.id or "",
            args=args,
            kwargs=kwargs,
            exception=exception,
            traceback=getattr(einfo, "traceback", "") or "",
            request_id=request.get(guid_settings.guid_header_name) or get_guid() or "",
            queue=queue,
            retries=request.retries or 0,
        )
        if letter is not None:
            logger.warning("task %s[%s] recorded as dead letter %s", name, task_id, letter.pk)
    except Exception:
        # The log line is then the only record: make it complete.
        logger.exception(
            "dead letter NOT recorded for %s[%s] args=%r kwargs=%r error=%r",
            name,
            task_id,
            args,
            kwargs,
            exception,
        )
    finally:
        if not request.is_eager:
            # Close the psycopg pool too: one left open in the main process would be inherited
            # by the pool processes it forks later, sharing its sockets with them.
            for connection in connections.all(initialized_only=True):
                connection.close()
                if connection.settings_dict.get("OPTIONS", {}).get("pool"):
                    with contextlib.suppress(KeyError):
                        connection.close_pool()


@worker_ready.connect
def log_worker_startup(**kwargs):
    from config.startup import log_startup_summary

    log_startup_summary("worker")
    if os.environ.get("REMAP_SIGTERM") != "SIGQUIT":
        logger.warning(
            "REMAP_SIGTERM is not SIGQUIT: a SIGTERM (deploy) waits for running tasks without "
            "limit instead of the %s s soft shutdown.",
            app.conf.worker_soft_shutdown_timeout,
        )


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
    # The schedule's first heartbeat is a minute away; /health/ would say "unknown" until then.
    from core.tasks import beat_heartbeat

    beat_heartbeat.delay()
