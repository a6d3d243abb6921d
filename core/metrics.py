"""Prometheus metrics for Celery dead letters, and the /metrics view that includes them.

Two numbers, measured in two different places:

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
whatever that view would export. It must be routed at /metrics (config/urls.py).
"""

import logging
import os

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


_table_registry = CollectorRegistry()
_table_registry.register(OpenDeadLettersCollector())


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
