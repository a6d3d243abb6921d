"""Every check of the live report, listed here and nowhere else: module by module in the
checklist's order, which is also the order in which a line's details are joined when several
checks cover it."""

from readiness import (
    api,
    celery_checks,
    database,
    environment,
    gunicorn_checks,
    health,
    image,
    logs,
    redis_checks,
    server,
    sockets,
)
from readiness.registry import collect

MODULES = (
    environment,
    server,
    api,
    health,
    sockets,
    database,
    redis_checks,
    celery_checks,
    logs,
    gunicorn_checks,
    image,
)
CHECKS = collect(MODULES)


def live_ids() -> set[str]:
    """Every checklist id some check covers. Touches no network."""
    return {line_id for item in CHECKS for line_id in item.ids}
