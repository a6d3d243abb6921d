"""Checks of Celery: settings, broker, results, workers, queues and beat (phases 5, 9, 11, 12)."""

import contextlib
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings

from config.redis_probe import redact
from readiness.registry import Outcome, check, failed, judged, passed
from readiness.runner import Context
from readiness.shared import CELERY_REPLY_SECONDS, QUEUES, _broker, _celery_app, _workers

# A task sent to each queue must come back within this long.
ROUND_TRIP_SECONDS = 6.0


def _seconds(value) -> float | None:
    return value.total_seconds() if hasattr(value, "total_seconds") else value


_CELERY_VALUES = [
    (("P5.3",), "task_acks_late", True),
    (("P5.4",), "worker_prefetch_multiplier", 1),
    (("P5.5",), "task_reject_on_worker_lost", True),
    (("P5.6",), "broker_heartbeat", 60),
    (("P5.7", "P9.21"), "task_time_limit", 3600),
    (("P5.8", "P9.21"), "task_soft_time_limit", 3000),
    (("P5.9",), "worker_max_tasks_per_child", 100),
    (("P5.10",), "broker_connection_max_retries", 10),
]


def _celery_value_check(key: str, expected) -> Callable[[Context], Outcome]:
    def celery_value(context: Context) -> Outcome:
        value = _seconds(_celery_app().conf.get(key))
        if value != expected:
            return failed(f"Celery {key}={value}, the checklist says {expected}")
        if key == "broker_heartbeat":
            return passed(f"{key}={value} (Redis has no AMQP heartbeats: see P1.27)")
        return passed(f"{key}={value}")

    return celery_value


celery_value_checks = [
    check(*ids, name=f"celery_{key}")(_celery_value_check(key, expected))
    for ids, key, expected in _CELERY_VALUES
]


@check("P5.1")
def celery_broker(context: Context) -> Outcome:
    app = _celery_app()
    problems = [] if app.conf.broker_connection_retry_on_startup else ["no retry on startup"]
    _broker(context)
    return judged(
        problems, f"Redis broker {redact(app.conf.broker_url)} answers; retried on startup"
    )


@check("P5.2")
def celery_results(context: Context) -> Outcome:
    app = _celery_app()
    backend = str(app.conf.result_backend or "")
    problems = [] if urlsplit(backend).scheme in {"redis", "rediss"} else [f"backend {backend}"]
    if _seconds(app.conf.result_expires) != 3600:
        problems.append(f"result_expires={app.conf.result_expires}")
    return judged(problems, "Redis result backend, results expire after 3600 s")


@check("P5.17", "P12.15")
def celery_workers(context: Context) -> Outcome:
    nodes = _workers(context)["nodes"]
    if not nodes:
        return failed(f"no Celery worker answered ping within {CELERY_REPLY_SECONDS:.0f} s")
    return passed(f"{len(nodes)} worker(s) answer ping: {', '.join(nodes)}")


@check("P5.4", "P5.9")
def celery_worker_settings(context: Context) -> Outcome:
    workers = _workers(context)
    if not workers["nodes"]:
        return failed("no worker answered, so none could be checked")
    problems = []
    for node, stats in sorted(workers["stats"].items()):
        pool = stats.get("pool", {})
        if pool.get("max-tasks-per-child") != 100:
            problems.append(f"{node} recycles after {pool.get('max-tasks-per-child')} tasks")
        if stats.get("prefetch_count") != pool.get("max-concurrency"):
            problems.append(
                f"{node} prefetches {stats.get('prefetch_count')} for "
                f"{pool.get('max-concurrency')} processes"
            )
    if set(workers["stats"]) != set(workers["nodes"]):
        problems.append("not every worker answered stats")
    return judged(problems, "every worker prefetches one task per process, recycles after 100")


@check("P5.14", "P9.19")
def celery_queues(context: Context) -> Outcome:
    app = _celery_app()
    problems = []
    declared = {queue.name: queue.routing_key for queue in app.conf.task_queues or []}
    if set(declared) != set(QUEUES) or any(declared[n] != n for n in declared):
        problems.append(f"queues {declared}, not high/default/low each with its own key")
    routed = {route.get("queue") for route in (app.conf.task_routes or {}).values()}
    if not routed <= set(declared):
        problems.append(f"routes to undeclared queues {sorted(routed - set(declared))}")
    lengths = _broker(context)
    workers = _workers(context)
    consumed = {name for names in workers["queues"].values() for name in names}
    for name in QUEUES:
        if name not in consumed:
            problems.append(f"no worker consumes {name} ({lengths[name]} waiting)")
    waiting = ", ".join(f"{name} {lengths[name]}" for name in QUEUES)
    return judged(problems, f"high/default/low routed and consumed; waiting: {waiting}")


@check("P11.13", "P12.20")
def celery_round_trip(context: Context) -> Outcome:
    def compute() -> dict[str, float | None]:
        _broker(context)
        app = _celery_app()
        sent = {}
        for name in QUEUES:
            token = uuid.uuid4().hex
            # a built-in task that returns its arguments; it expires unrun if nobody takes it
            result = app.send_task("celery.accumulate", args=(token,), queue=name, expires=60)
            sent[name] = (result, token)
        started, took = time.monotonic(), dict.fromkeys(QUEUES)
        try:
            while time.monotonic() - started < ROUND_TRIP_SECONDS and None in took.values():
                for name, (result, token) in sent.items():
                    meta = app.backend.get_task_meta(result.id)
                    if took[name] is None and meta.get("result") == [token]:
                        took[name] = time.monotonic() - started
                time.sleep(0.1)
        finally:
            for result, _ in sent.values():
                with contextlib.suppress(Exception):  # only tidying up
                    result.forget()
        return took

    took = context.once("round-trip", compute)
    late = [name for name, seconds in took.items() if seconds is None]
    if late:
        return failed(
            f"tasks sent to {', '.join(late)} did not come back within {ROUND_TRIP_SECONDS:.0f} s"
        )
    return passed(
        "a task through each queue came back: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in took.items())
    )


def _beat_schedule(context: Context) -> dict:
    def compute() -> dict:
        # Every app's tasks are registered by now, as in a worker (runner.run imports them).
        return _celery_app().conf.beat_schedule or {}

    return context.once("beat-schedule", compute)


@check("P5.11", "P5.13", "P9.20")
def beat_schedule(context: Context) -> Outcome:
    app = _celery_app()
    schedule = _beat_schedule(context)
    problems = []
    for name, entry in sorted(schedule.items()):
        if entry["task"] not in app.tasks:
            problems.append(f"{name}: task {entry['task']} is not registered")
        interval = _seconds(entry["schedule"])
        expires = (entry.get("options") or {}).get("expires")
        if expires is None:
            problems.append(f"{name}: no expires")
        elif isinstance(interval, int | float) and _seconds(expires) >= interval:
            problems.append(f"{name}: expires {expires} s is not shorter than its {interval} s")
    if not schedule:
        problems.append("the beat schedule is empty")
    return judged(
        problems,
        f"{len(schedule)} scheduled tasks, all registered, each expiring before its next run",
    )


@check("P5.12")
def beat_heartbeat(context: Context) -> Outcome:
    from django.core.cache import cache

    from core.health import BEAT_HEARTBEAT_KEY

    entries = [
        e for e in _beat_schedule(context).values() if e["task"] == "core.tasks.beat_heartbeat"
    ]
    if not entries or _seconds(entries[0]["schedule"]) != 60:
        return failed("no beat_heartbeat entry every 60 s in the beat schedule")
    last = cache.get(BEAT_HEARTBEAT_KEY)
    if last is None:
        return failed("no heartbeat recorded: beat is not running, or no worker ran its task")
    age = time.time() - float(last)
    if age > settings.BEAT_HEARTBEAT_MAX_AGE_SECONDS:
        return failed(f"the last heartbeat is {age:.0f} s old: beat (or the high queue) stopped")
    return passed(f"every 60 s; the last one {age:.0f} s ago")


@check("P5.19")
def correlation_ids(context: Context) -> Outcome:
    from django_guid.integrations import CeleryIntegration

    problems = []
    integrations = settings.DJANGO_GUID.get("INTEGRATIONS", [])
    if not any(isinstance(i, CeleryIntegration) for i in integrations):
        problems.append("django-guid's Celery integration is off")
    answer = context.request("GET", "/api/config/")
    header = settings.DJANGO_GUID.get("GUID_HEADER_NAME", "Correlation-ID")
    if not answer.header(header):
        problems.append(f"{answer.label} answered without {header}")
    return judged(problems, f"each request gets an {header}, carried into its Celery tasks")
