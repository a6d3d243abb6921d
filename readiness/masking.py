"""Keeping secrets out of the report: URL credentials and known secret values are masked."""

import os
import re
from urllib.parse import urlsplit

from django.conf import settings

from config.redis_probe import redact

_MAX_DETAIL = 400
_SECRET_SETTINGS = (
    "SECRET_KEY",
    "OTP_HMAC_KEY",
    "DELIVERY_CODE_HMAC_KEY",
    "RAZORPAY_KEY_SECRET",
    "RAZORPAY_WEBHOOK_SECRET",
    "TWILIO_AUTH_TOKEN",
    "MSG91_AUTH_KEY",
    "SENTRY_DSN",
    "DEMO_STAFF_PASSWORD",
)


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def _secret_values() -> list[str]:
    values = [str(getattr(settings, name, "") or "") for name in _SECRET_SETTINGS]
    values.append(str(settings.DATABASES.get("default", {}).get("PASSWORD") or ""))
    for url in (settings.REDIS_URL, os.environ.get("DATABASE_URL", ""), settings.SENTRY_DSN):
        parts = urlsplit(url or "")
        values += [parts.password or ""]
        if url == settings.SENTRY_DSN:
            values.append(parts.username or "")  # a Sentry DSN's key is its user part
    # Shorter values are left to the URL redaction: a development password like "delivery"
    # would otherwise mask every path and name that contains the word.
    return sorted({value for value in values if len(value) >= 12}, key=len, reverse=True)


def scrub(text: str) -> str:
    """The text without credentials in URLs and without any known secret value."""
    text = _URL.sub(lambda match: redact(match.group(0)), text)
    for value in _secret_values():
        text = text.replace(value, "***")
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def describe(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
