"""Logging pieces shared by Django, gunicorn and Celery."""

import logging
import re

# WebSocket clients pass their JWT as ?token=...; uvicorn logs paths with their query string.
_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])(?:token|access|refresh)=)[^&\s\"']+", re.IGNORECASE)


def redact_query_tokens(text: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


class RedactQueryTokens(logging.Filter):
    """Masks token values in query strings, in the message and in its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_query_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_query_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        elif isinstance(record.args, dict):
            record.args = {
                key: redact_query_tokens(value) if isinstance(value, str) else value
                for key, value in record.args.items()
            }
        # django.request attaches the request itself; formatters print its repr, path and all.
        request = getattr(record, "request", None)
        if request is not None and not isinstance(request, str):
            record.request = redact_query_tokens(repr(request))
        return True


class QuietCanaries(logging.Filter):
    """Drops Celery's "received" and "succeeded" lines of the workers' canary task.

    Every worker runs one every WORKER_CANARY_INTERVAL_SECONDS (core/worker_liveness.py): two
    INFO lines each, some 17,000 a day per worker, that say nothing the probe does not. A
    canary that fails is still logged (WARNING and above pass).
    """

    CANARY = "core.tasks.worker_canary"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not record.name.startswith("celery"):
            return True
        return self.CANARY not in record.getMessage()
