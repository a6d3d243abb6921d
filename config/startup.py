"""The start-up summary every process logs once: what it runs with, never a secret."""

import logging

from django.conf import settings

from config.redis_probe import redact

logger = logging.getLogger("config.startup")


def log_startup_summary(process: str) -> None:
    database = settings.DATABASES["default"]
    logger.info(
        "%s starting: env=%s debug=%s allowed_hosts=%s database=%s@%s:%s/%s pool=%s "
        "redis=%s sentry=%s primary=%s",
        process,
        settings.DJANGO_ENV,
        settings.DEBUG,
        ",".join(settings.ALLOWED_HOSTS),
        database.get("USER") or "-",
        database.get("HOST") or "-",
        database.get("PORT") or "5432",
        database.get("NAME"),
        "psycopg" if settings.DB_POOL else f"conn_max_age={database.get('CONN_MAX_AGE')}",
        redact(settings.REDIS_URL) if settings.REDIS_URL else "-",
        "on" if settings.SENTRY_DSN else "off",
        settings.IS_PRIMARY,
    )
    for warning in settings.STARTUP_WARNINGS:
        logger.warning(warning)
