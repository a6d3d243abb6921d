"""Checks of logging and error tracking (phases 6, 7, 8, 10)."""

import logging
import sys

from django.conf import settings

from readiness.registry import Outcome, check, failed, judged, passed
from readiness.runner import Context


def _streams() -> list[str]:
    """Where the root, django and celery loggers write: stdout, stderr or somewhere else."""
    places = []
    for name in ("", "django", "celery", "django.db.backends"):
        for handler in logging.getLogger(name).handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.FileHandler) or not isinstance(
                handler, logging.StreamHandler
            ):
                places.append(f"{name or 'root'}: {type(handler).__name__}")
            elif stream not in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                places.append(f"{name or 'root'}: {getattr(stream, 'name', stream)}")
    return places


@check("P6.1", "P8.13")
def logs_to_stdout(context: Context) -> Outcome:
    elsewhere = _streams()
    if elsewhere:
        return failed(f"logs written elsewhere: {', '.join(elsewhere)}")
    return passed("root, django and celery loggers write to stdout/stderr only")


@check("P6.2")
def structured_logs(context: Context) -> Outcome:
    if settings.IS_PRODUCTION and settings.LOG_FORMAT != "json":
        return failed(f"LOG_FORMAT={settings.LOG_FORMAT} in production, not json")
    if settings.LOG_FORMAT == "json":
        return passed("LOG_FORMAT=json: one JSON object per line (level, logger, request_id)")
    return passed(f"LOG_FORMAT={settings.LOG_FORMAT} (DJANGO_ENV={settings.DJANGO_ENV})")


@check("P6.3")
def log_levels(context: Context) -> Outcome:
    level = logging.getLevelName(logging.getLogger().level)
    if settings.IS_PRODUCTION and level == "DEBUG":
        return failed("LOG_LEVEL=DEBUG in production")
    return passed(f"root logger at {level} (DJANGO_ENV={settings.DJANGO_ENV})")


@check("P6.4", "P6.6")
def framework_loggers(context: Context) -> Outcome:
    problems = []
    for name in ("django", "celery"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            problems.append(f"the {name} logger has no handler")
    level = logging.getLevelName(logging.getLogger("celery").level)
    return judged(problems, f"django and celery loggers configured (celery at {level})")


@check("P6.5")
def database_query_logs(context: Context) -> Outcome:
    level = logging.getLogger("django.db.backends").getEffectiveLevel()
    if level < logging.WARNING:
        return failed(f"django.db.backends logs at {logging.getLevelName(level)}: every query")
    return passed(f"django.db.backends at {logging.getLevelName(level)}")


@check("P6.20", "P7.16", "P10.19")
def sentry(context: Context) -> Outcome:
    import sentry_sdk

    client = sentry_sdk.get_client()
    if settings.SENTRY_DSN and not client.is_active():
        return failed("SENTRY_DSN is set but the Sentry SDK did not start")
    if client.is_active():
        environment = client.options.get("environment")
        return passed(f"Sentry on (environment {environment}, no personal data sent)")
    return passed("Sentry off: SENTRY_DSN is not set (optional)")
