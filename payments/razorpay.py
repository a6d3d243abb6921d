"""A small Razorpay client over httpx, and the two signature checks Razorpay asks for.

Only the calls we use: create an order, read a payment, list an order's payments, refund a
payment. Base URL, keys and timeouts come from settings; tests point RAZORPAY_API_BASE at a
local fake, so no test ever reaches Razorpay.
"""

import hashlib
import hmac
import logging

import httpx
from django.conf import settings

from core.exceptions import ApiError
from payments.errors import PaymentError

logger = logging.getLogger(__name__)


class RazorpayUnavailable(ApiError):
    """Razorpay did not answer, or answered 5xx/429: worth retrying later. A class of its own
    (the app's other refusals are PaymentError codes) because Celery retries by exception type."""

    def __init__(self):
        super().__init__(PaymentError.PROVIDER_UNAVAILABLE)


class RazorpayRejected(ApiError):
    """Razorpay refused the request (4xx): retrying the same request will not help. A class of
    its own so a refund can tell it from Razorpay being down."""

    def __init__(self, description: str = ""):
        super().__init__(PaymentError.PROVIDER_ERROR, description)


def _client() -> httpx.Client:
    return httpx.Client(
        base_url=settings.RAZORPAY_API_BASE,
        auth=(settings.RAZORPAY_KEY_ID, settings.RAZORPAY_KEY_SECRET),
        timeout=settings.RAZORPAY_HTTP_TIMEOUT_SECONDS,
        headers={"Accept": "application/json"},
    )


def _call(method: str, path: str, *, json: dict | None = None, headers=None) -> dict:
    try:
        with _client() as client:
            response = client.request(method, path, json=json, headers=headers)
    except httpx.HTTPError as error:
        logger.warning("razorpay %s %s failed: %s", method, path, type(error).__name__)
        raise RazorpayUnavailable() from error
    if response.status_code >= 500 or response.status_code == 429:
        logger.warning("razorpay %s %s answered %s", method, path, response.status_code)
        raise RazorpayUnavailable()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        description = (body.get("error") or {}).get("description", "") if body else ""
        logger.warning(
            "razorpay %s %s refused (%s): %s", method, path, response.status_code, description
        )
        raise RazorpayRejected(description[:300])
    return body


def create_order(*, amount_paise: int, currency: str, receipt: str, notes: dict) -> dict:
    return _call(
        "POST",
        "/orders",
        json={"amount": amount_paise, "currency": currency, "receipt": receipt, "notes": notes},
    )


def fetch_payment(payment_id: str) -> dict:
    return _call("GET", f"/payments/{payment_id}")


def order_payments(razorpay_order_id: str) -> list[dict]:
    return _call("GET", f"/orders/{razorpay_order_id}/payments").get("items", [])


def refund_payment(
    *, payment_id: str, amount_paise: int, idempotency_key: str, notes: dict
) -> dict:
    return _call(
        "POST",
        f"/payments/{payment_id}/refund",
        json={"amount": amount_paise, "speed": "normal", "notes": notes},
        # Razorpay answers a repeat of this key with the refund it already made.
        headers={"X-Refund-Idempotency": idempotency_key},
    )


def _hmac_sha256(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same_signature(expected: str, given: str | None) -> bool:
    # As bytes: hmac.compare_digest raises TypeError for a str with non-ASCII characters, and
    # the signature comes from the client (a header, or checkout's JSON).
    return hmac.compare_digest(expected.encode(), (given or "").encode("utf-8", "surrogatepass"))


def checkout_signature_valid(
    *, razorpay_order_id: str, razorpay_payment_id: str, signature: str
) -> bool:
    """Checkout's razorpay_signature: HMAC-SHA256(key_secret, order_id + "|" + payment_id)."""
    if not settings.RAZORPAY_KEY_SECRET:
        return False
    expected = _hmac_sha256(
        settings.RAZORPAY_KEY_SECRET, f"{razorpay_order_id}|{razorpay_payment_id}".encode()
    )
    return _same_signature(expected, signature)


def webhook_signature_valid(*, raw_body: bytes, signature: str) -> bool:
    """X-Razorpay-Signature: HMAC-SHA256(webhook_secret, the raw request body)."""
    if not settings.RAZORPAY_WEBHOOK_SECRET:
        return False
    expected = _hmac_sha256(settings.RAZORPAY_WEBHOOK_SECRET, raw_body)
    return _same_signature(expected, signature)
