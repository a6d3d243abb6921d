"""Checks of health and metrics (phases 6, 8, 9, 11, 12)."""

import re
from collections.abc import Callable

from readiness.registry import Outcome, check, failed, judged, passed
from readiness.runner import Answer, Context
from readiness.shared import _workers


def _health(context: Context) -> Answer:
    """/health/ as a load balancer calls it: plain HTTP, addressed as in the URL."""
    return context.request("GET", "/health/", probe=True)


@check("P6.8", "P6.11", "P9.1", "P8.6", "P11.10", "P12.17")
def health_ok(context: Context) -> Outcome:
    answer = _health(context)
    body = answer.json()
    if answer.status != 200 or not isinstance(body, dict) or body.get("status") != "ok":
        return failed(f"{answer.label} answered {answer.status}: {answer.text[:120]}")
    return passed(f"{answer.label} answered 200 ok")


@check("P6.9")
def health_contents(context: Context) -> Outcome:
    checks = (_health(context).json() or {}).get("checks") or {}
    missing = {"database", "cache", "celery_beat"} - set(checks)
    if missing:
        return failed(f"/health/ does not report {', '.join(sorted(missing))}")
    return passed(", ".join(f"{name}={value}" for name, value in sorted(checks.items())))


@check("P6.12")
def health_fast(context: Context) -> Outcome:
    answer = _health(context)
    if answer.seconds >= 5:
        return failed(f"{answer.label} took {answer.seconds:.1f} s")
    return passed(f"{answer.label} answered in {answer.seconds:.2f} s")


@check("P6.14", "P8.15")
def health_probe_compatible(context: Context) -> Outcome:
    answer = _health(context)
    how = f"{context.parts.scheme.upper()} to {context.parts.hostname}, no proxy headers"
    if answer.status in {301, 302, 307, 308, 400}:
        return failed(f"a probe of {answer.label} ({how}) answered {answer.status}")
    return passed(f"a probe of /health/ ({how}) is answered, not redirected or refused")


@check("P10.17")
def health_leaks_nothing(context: Context) -> Outcome:
    answer = _health(context)
    body = answer.json()
    words = {"ok", "unavailable", "timeout", "in_memory", "stale", "unknown"}
    checks = body.get("checks") if isinstance(body, dict) else None
    if (
        not isinstance(checks, dict)
        or set(body) != {"status", "checks"}
        or not set(map(str, checks.values())) <= words
        or "://" in answer.text
    ):
        return failed(f"{answer.label} says more than status words: {answer.text[:120]}")
    return passed("/health/ answers only status words: no hosts, versions or errors")


@check("P12.15")
def all_services_healthy(context: Context) -> Outcome:
    checks = (_health(context).json() or {}).get("checks") or {}
    problems = [f"{name}={value}" for name, value in sorted(checks.items()) if value != "ok"]
    if not checks:
        problems.append("/health/ reported no checks")
    if not _workers(context)["nodes"]:
        problems.append("no Celery worker answered")
    return judged(problems, "database, cache and beat ok; Celery workers answer")


def _metrics(context: Context) -> Answer:
    context.request("GET", "/api/config/")  # at least one request counted
    return context.request("GET", "/metrics", probe=True)


_METRIC_FAMILIES = {
    "P6.16": "django_http_requests_total_by_view_transport_method_total",
    "P6.17": "django_http_requests_latency_seconds_by_view_method_bucket",
    "P6.18": "django_http_responses_total_by_status_view_method_total",
}


@check("P6.15", "P6.19")
def metrics_endpoint(context: Context) -> Outcome:
    answer = _metrics(context)
    if answer.status != 200 or "django_http_requests" not in answer.text:
        return failed(f"{answer.label} answered {answer.status} without django metrics")
    return passed(f"{answer.label} serves django-prometheus metrics")


def _metric_check(line_id: str) -> Callable[[Context], Outcome]:
    def metric_family(context: Context) -> Outcome:
        family = _METRIC_FAMILIES[line_id]
        if not re.search(rf"^{family}\{{", _metrics(context).text, re.MULTILINE):
            return failed(f"/metrics has no {family} samples")
        return passed(f"/metrics has {family}")

    return metric_family


metric_family_checks = [
    check(line_id, name=f"metric_family_{line_id}")(_metric_check(line_id))
    for line_id in _METRIC_FAMILIES
]
