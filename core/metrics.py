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

Events that happen in any process (a worker cancelling an order nobody took, a capture that
does not match its order) are counted in Redis (`EventCounter`, one hash) and exported the same
way, as counters: a Redis restart starts them from 0, which rate() and increase() take as a
counter reset. Every web instance reports the same totals, so rules aggregate them with max().
The beat heartbeat and the health checks' results are read at scrape time too, so the alert
rules (deploy/monitoring/alerts.yml) can see what /health/ sees.
"""

import json
import logging
import os
import time

import prometheus_client
from django.db import DatabaseError, transaction
from django.db.models import Count
from django.http import HttpResponse
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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


EVENTS_HASH = "metrics:events"


class EventCounter:
    """A counter of something any process does (web, worker, beat), kept in Redis so every web
    instance's /metrics reports the whole fleet's count. Counting is best effort: an event is
    never refused because Redis is down, it is only left uncounted (and logged)."""

    def __init__(self, name: str, documentation: str, label: str = "", values: tuple = ()):
        self.name, self.documentation = name, documentation
        # One optional label with a known set of values, each exported from 0 on.
        self.label, self.values = label, tuple(values)
        EVENT_COUNTERS.append(self)

    def declare(self, values) -> None:
        """The label's values, for an app whose values core cannot import."""
        self.values = tuple(values)

    def field(self, value: str = "") -> str:
        return f"{self.name}|{value}"

    def inc_on_commit(self, amount: int = 1, value: str = "") -> None:
        """Counts once the current transaction commits (at once outside one)."""
        transaction.on_commit(lambda: self.inc(amount, value))

    def inc(self, amount: int = 1, value: str = "") -> None:
        import redis
        from django.conf import settings

        from core.health import redis_client

        if not settings.USE_REDIS or amount <= 0:
            return
        try:
            redis_client().hincrby(EVENTS_HASH, self.field(value), amount)
        except redis.RedisError:
            logger.warning("%s not counted: Redis unavailable", self.name, exc_info=True)


EVENT_COUNTERS: list[EventCounter] = []

# The events counted, in one place so every web process exports all of them from its start
# (a counter defined in a module the web never imported would be missing from /metrics).
ORDERS_CANCELLED_NO_RIDER = EventCounter(
    "dispatch_orders_cancelled_no_rider",
    "Orders cancelled because no rider took them within DISPATCH_WINDOW_SECONDS.",
)
OFFERS_MADE = EventCounter("dispatch_offers_made", "Offers sent to riders.")
OFFERS_EXPIRED = EventCounter(
    "dispatch_offers_expired", "Offers that expired before their rider answered."
)
PAYMENT_MISMATCHES = EventCounter(
    "payments_mismatches",
    "Captures refused because they do not match their order (amount, currency, or an order "
    "that cannot be paid), by where they were seen: verify, webhook or reconciler.",
    label="source",
    values=("verify", "webhook", "reconciler"),
)
# Its values are the orders app's statuses, declared by OrdersConfig.ready().
ORDER_TRANSITIONS = EventCounter(
    "orders_transitions",
    "Order status changes, by the status the order moved to.",
    label="to_status",
)


class EventsCollector:
    """Every EventCounter's total from Redis, and the beat heartbeat's time and allowed age."""

    BEAT = (
        "celery_beat_heartbeat_timestamp_seconds",
        "When a worker last ran beat's heartbeat task (Unix time); it stops moving when beat, "
        "the broker or the high-queue worker stops.",
    )
    BEAT_MAX_AGE = (
        "celery_beat_heartbeat_max_age_seconds",
        "BEAT_HEARTBEAT_MAX_AGE_SECONDS: /health/ calls the heartbeat stale past this age.",
    )

    def describe(self):
        beat = [GaugeMetricFamily(*self.BEAT), GaugeMetricFamily(*self.BEAT_MAX_AGE)]
        return [*self._families().values(), *beat]

    def _families(self) -> dict[str, CounterMetricFamily]:
        return {
            counter.name: CounterMetricFamily(
                counter.name,
                counter.documentation,
                labels=[counter.label] if counter.label else None,
            )
            for counter in EVENT_COUNTERS
        }

    def collect(self):
        import redis
        from django.conf import settings

        from core.health import BEAT_HEARTBEAT_KEY, redis_client

        if not settings.USE_REDIS:
            return
        try:
            counts = {
                field.decode(): int(count)
                for field, count in redis_client().hgetall(EVENTS_HASH).items()
            }
            from django.core.cache import cache

            beat = cache.get(BEAT_HEARTBEAT_KEY)
        except redis.RedisError:
            logger.warning("event counters skipped: Redis unavailable", exc_info=True)
            return
        families = self._families()
        for counter in EVENT_COUNTERS:
            family = families[counter.name]
            if counter.label:
                for value in counter.values:
                    family.add_metric([value], counts.get(counter.field(value), 0))
            else:
                family.add_metric([], counts.get(counter.field(), 0))
        yield from families.values()
        max_age = GaugeMetricFamily(*self.BEAT_MAX_AGE)
        max_age.add_metric([], settings.BEAT_HEARTBEAT_MAX_AGE_SECONDS)
        yield max_age
        if beat is not None:  # never sent yet: absent, as "unknown" in /health/
            heartbeat = GaugeMetricFamily(*self.BEAT)
            heartbeat.add_metric([], float(beat))
            yield heartbeat


class HealthCollector:
    """/health/'s checks as gauges, so a rule sees what the load balancer sees."""

    NAME = (
        "delivery_health_check_ok",
        "1 when the /health/ check passes (database, cache, celery_beat), else 0.",
    )

    def describe(self):
        return [GaugeMetricFamily(*self.NAME, labels=["check"])]

    def collect(self):
        from core.health import IN_MEMORY, OK, run_checks

        _, results = run_checks()
        gauge = GaugeMetricFamily(*self.NAME, labels=["check"])
        for check, result in sorted(results.items()):
            gauge.add_metric([check], 1.0 if result in {OK, IN_MEMORY} else 0.0)
        yield gauge


_table_registry = CollectorRegistry()
_table_registry.register(OpenDeadLettersCollector())
_table_registry.register(CeleryQueuesCollector())
_table_registry.register(EventsCollector())
_table_registry.register(HealthCollector())


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
