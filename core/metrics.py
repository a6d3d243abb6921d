"""Prometheus metrics read at scrape time (Celery dead letters, queues, worker canaries), and the
/metrics view that adds them to django_prometheus's.

Dead letters are counted in two different places:

- `celery_dead_letters_total{task}` is a Counter incremented by the process that records the
  dead letter, i.e. a Celery worker. A worker is a different process (usually a different
  container) from the web, and it serves no /metrics, so this counter is NOT visible on the
  web's /metrics; it only shows where the recording process's registry is exported (a web
  process running a task eagerly in development, or a future worker metrics endpoint).
- `delivery_dead_letters_open{task}` is a Gauge computed from the DeadLetter table each time
  /metrics is scraped, so every web process reports the same, complete number. Alert on this
  one (e.g. `sum(delivery_dead_letters_open) > 0`).

django_prometheus's own view exports only the multiprocess registry under gunicorn, where a
collector added to the default registry never appears; `metrics_view` adds the table gauge to
whatever that view would export. It must be routed at /metrics (config/urls.py). The queue
gauges and the workers' last canary times (CeleryQueuesCollector) are read from Redis the same
way, so every web process reports them.
"""

import json
import logging
import os
import time

import prometheus_client
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpResponse
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

DEAD_LETTERS_RECORDED = Counter(
    "celery_dead_letters",
    "Tasks recorded as dead letters by this process (a worker; not aggregated across processes).",
    ["task"],
)

_OPEN_NAME = "delivery_dead_letters_open"
_OPEN_HELP = "Dead letters not yet retried or resolved, by task (read from the database)."


class OpenDeadLettersCollector:
    """Counts open dead letters per task at scrape time."""

    def describe(self):
        # Registering must not touch the database.
        return [GaugeMetricFamily(_OPEN_NAME, _OPEN_HELP, labels=["task"])]

    def collect(self):
        from core.models import DeadLetter

        gauge = GaugeMetricFamily(_OPEN_NAME, _OPEN_HELP, labels=["task"])
        try:
            rows = (
                DeadLetter.objects.filter(status=DeadLetter.Status.OPEN)
                .values_list("task_name")
                .annotate(count=Count("id"))
                .order_by("task_name")
            )
            for task_name, count in rows:
                gauge.add_metric([task_name], count)
        except DatabaseError:
            # A scrape while PostgreSQL is down still returns the process metrics.
            logger.warning("dead letter gauge skipped: database unavailable", exc_info=True)
            return
        yield gauge


class CeleryQueuesCollector:
    """Each queue's depth and oldest message's age, and each worker's last canary, from Redis.

    What an alert needs to see a worker that has stopped consuming (core/worker_liveness.py):
    a queue that grows and ages while a worker's last canary falls behind. Read at scrape time
    with the health checks' short-timeout client; a scrape while Redis is down leaves them out.
    """

    QUEUE_LENGTH = ("celery_queue_length", "Messages waiting in the queue (read from Redis).")
    OLDEST_AGE = (
        "celery_queue_oldest_message_age_seconds",
        "Age of the queue's oldest waiting message; 0 when the queue is empty.",
    )
    CANARY = (
        "celery_worker_canary_last_run_timestamp_seconds",
        "When the worker last ran its own canary task (Unix time); it stops moving when the "
        "worker stops consuming.",
    )

    def describe(self):
        return [
            GaugeMetricFamily(*self.QUEUE_LENGTH, labels=["queue"]),
            GaugeMetricFamily(*self.OLDEST_AGE, labels=["queue"]),
            GaugeMetricFamily(*self.CANARY, labels=["worker"]),
        ]

    def collect(self):
        import redis
        from django.conf import settings
        from kombu.transport.redis import PRIORITY_STEPS, Channel

        from config.celery import app
        from core.health import redis_client
        from core.worker_liveness import CANARY_HASH, PUBLISHED_AT_HEADER

        if not settings.USE_REDIS:
            return
        # kombu's Redis transport keeps a queue's messages in one list per priority step, named
        # as its Channel._q_for_pri names them.
        queues = sorted(queue.name for queue in app.conf.task_queues)
        keys = [
            (queue, f"{queue}{Channel.sep}{step}" if step else queue)
            for queue in queues
            for step in PRIORITY_STEPS
        ]
        try:
            pipeline = redis_client().pipeline(transaction=False)
            for _, key in keys:
                pipeline.llen(key)
                pipeline.lindex(key, -1)  # LPUSH in, BRPOP out: the oldest is last
            pipeline.hgetall(CANARY_HASH)
            *replies, canaries = pipeline.execute()
        except redis.RedisError:
            logger.warning("queue gauges skipped: Redis unavailable", exc_info=True)
            return
        waiting = dict.fromkeys(queues, 0)
        oldest: dict[str, float] = {}
        for (queue, _), count, last in zip(keys, replies[0::2], replies[1::2], strict=True):
            waiting[queue] += count
            published = _published_at(last, PUBLISHED_AT_HEADER) if last else None
            if published is not None:
                oldest[queue] = min(published, oldest.get(queue, published))
        now = time.time()
        length = GaugeMetricFamily(*self.QUEUE_LENGTH, labels=["queue"])
        oldest_age = GaugeMetricFamily(*self.OLDEST_AGE, labels=["queue"])
        for queue in queues:
            length.add_metric([queue], waiting[queue])
            oldest_age.add_metric(
                [queue], max(0.0, now - oldest[queue]) if queue in oldest else 0.0
            )
        canary = GaugeMetricFamily(*self.CANARY, labels=["worker"])
        for node, ran_at in sorted(canaries.items()):
            canary.add_metric([node.decode()], float(ran_at))
        yield from (length, oldest_age, canary)


def _published_at(raw: bytes, header: str) -> float | None:
    """The publish time a message carries (config/celery.py stamps it), if any."""
    try:
        return float(json.loads(raw)["headers"][header])
    except (ValueError, KeyError, TypeError):
        return None


_table_registry = CollectorRegistry()
_table_registry.register(OpenDeadLettersCollector())
_table_registry.register(CeleryQueuesCollector())


def metrics_view(request):
    """django_prometheus's /metrics plus the gauges read from the database."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    body = prometheus_client.generate_latest(registry) + prometheus_client.generate_latest(
        _table_registry
    )
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
