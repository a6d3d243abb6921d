"""A fake Razorpay at the HTTP boundary (pytest-httpserver on a local port).

It keeps just enough state to answer like Razorpay: orders, payments on them, refunds keyed by
X-Refund-Idempotency (a repeated key gets the refund already made). It checks basic auth on
every call and records what it was sent. Tests capture payments with `capture()` and sign
checkout results and webhooks with the helpers below.
"""

import hashlib
import hmac
import itertools
import json
import re
import threading
from dataclasses import dataclass, field

import pytest
from werkzeug import Request, Response

KEY_ID = "rzp_test_fakekey"
KEY_SECRET = "fake-key-secret"
WEBHOOK_SECRET = "fake-webhook-secret"
WEBHOOK_URL = "/api/v1/payments/razorpay/webhook/"
RAZORPAY_ORDER_URL = "/api/v1/payments/razorpay/order/"
VERIFY_URL = "/api/v1/payments/razorpay/verify/"


def checkout_signature(razorpay_order_id: str, razorpay_payment_id: str, secret=KEY_SECRET) -> str:
    message = f"{razorpay_order_id}|{razorpay_payment_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_signature(body: bytes, secret=WEBHOOK_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(event: str, **entities: dict) -> bytes:
    payload = {name: {"entity": entity} for name, entity in entities.items()}
    return json.dumps({"entity": "event", "event": event, "payload": payload}).encode()


def post_webhook(client, body: bytes, event_id: str, signature: str | None = None):
    return client.generic(
        "POST",
        WEBHOOK_URL,
        body,
        content_type="application/json",
        HTTP_X_RAZORPAY_SIGNATURE=signature if signature is not None else webhook_signature(body),
        HTTP_X_RAZORPAY_EVENT_ID=event_id,
    )


@dataclass
class FakeRazorpay:
    orders: dict = field(default_factory=dict)
    payments: dict = field(default_factory=dict)
    refunds_by_key: dict = field(default_factory=dict)
    refund_requests: list = field(default_factory=list)
    # The next this-many refund calls answer 500 (after doing nothing), as an outage would.
    refund_failures: int = 0
    # What refunds report at first: "processed" or "pending".
    refund_status: str = "processed"
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, server) -> None:
        routes = [
            ("POST", r"^/v1/orders$", self._create_order),
            ("GET", r"^/v1/orders/([^/]+)/payments$", self._order_payments),
            ("POST", r"^/v1/payments/([^/]+)/refund$", self._refund),
            ("GET", r"^/v1/payments/([^/]+)$", self._payment),
        ]
        for method, pattern, handler in routes:
            server.expect_request(re.compile(pattern), method=method).respond_with_handler(
                self._authenticated(pattern, handler)
            )

    def _authenticated(self, pattern, handler):
        def respond(request: Request) -> Response:
            auth = request.authorization
            if auth is None or (auth.username, auth.password) != (KEY_ID, KEY_SECRET):
                return _json({"error": {"code": "BAD_REQUEST_ERROR"}}, 401)
            with self._lock:
                return handler(request, *re.match(pattern, request.path).groups())

        return respond

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def _create_order(self, request: Request) -> Response:
        body = request.get_json()
        order = {
            "id": self._new_id("order"),
            "entity": "order",
            "amount": body["amount"],
            "currency": body["currency"],
            "receipt": body["receipt"],
            "notes": body.get("notes", {}),
            "status": "created",
        }
        self.orders[order["id"]] = order
        return _json(order)

    def _payment(self, request: Request, payment_id: str) -> Response:
        if payment_id not in self.payments:
            return _json({"error": {"code": "BAD_REQUEST_ERROR", "description": "no such id"}}, 400)
        return _json(self.payments[payment_id])

    def _order_payments(self, request: Request, order_id: str) -> Response:
        items = [p for p in self.payments.values() if p["order_id"] == order_id]
        return _json({"entity": "collection", "count": len(items), "items": items})

    def _refund(self, request: Request, payment_id: str) -> Response:
        key = request.headers.get("X-Refund-Idempotency", "")
        self.refund_requests.append({"payment_id": payment_id, "key": key, **request.get_json()})
        if self.refund_failures > 0:
            self.refund_failures -= 1
            return _json({"error": {"code": "SERVER_ERROR"}}, 500)
        if key in self.refunds_by_key:
            return _json(self.refunds_by_key[key])
        refund = {
            "id": self._new_id("rfnd"),
            "entity": "refund",
            "payment_id": payment_id,
            "amount": request.get_json()["amount"],
            "status": self.refund_status,
        }
        self.refunds_by_key[key] = refund
        return _json(refund)

    # --- what the customer does in Razorpay Checkout -----------------------------------------

    def capture(self, razorpay_order_id: str, *, amount=None, currency=None, status="captured"):
        """A payment on the order, by default captured for the order's own amount."""
        order = self.orders[razorpay_order_id]
        payment = {
            "id": self._new_id("pay"),
            "entity": "payment",
            "order_id": razorpay_order_id,
            "amount": order["amount"] if amount is None else amount,
            "currency": currency or order["currency"],
            "status": status,
            "method": "upi",
        }
        self.payments[payment["id"]] = payment
        return payment

    def distinct_refund_keys(self) -> set[str]:
        return {call["key"] for call in self.refund_requests}


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@pytest.fixture
def razorpay(httpserver, settings) -> FakeRazorpay:
    """Razorpay keys set, and RAZORPAY_API_BASE pointing at a fresh local fake."""
    settings.RAZORPAY_KEY_ID = KEY_ID
    settings.RAZORPAY_KEY_SECRET = KEY_SECRET
    settings.RAZORPAY_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.PAYMENTS_ENABLED = True
    settings.RAZORPAY_API_BASE = httpserver.url_for("/v1")
    settings.RAZORPAY_HTTP_TIMEOUT_SECONDS = 5.0
    fake = FakeRazorpay()
    fake.install(httpserver)
    yield fake
    httpserver.check_assertions()
