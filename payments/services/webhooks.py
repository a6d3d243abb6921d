"""Razorpay's webhooks: checked against the raw body, stored once, applied by a task."""

import hashlib
import json
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.exceptions import ApiError, CommonError
from core.queueing import queue_task
from orders.errors import OrderError
from payments import razorpay
from payments.errors import PaymentError
from payments.models import WebhookEvent
from payments.services.checkout import Source, mark_paid, payment_mark_failed
from payments.services.refunds import refund_settle

logger = logging.getLogger(__name__)


def webhook_receive(*, raw_body: bytes, signature: str, event_id: str) -> tuple[WebhookEvent, bool]:
    """Checks the signature over the raw body and stores the event once; returns (event, new).

    A new event is processed by a Celery task after commit; a redelivered one is ignored.
    """
    if not settings.RAZORPAY_WEBHOOK_SECRET:
        raise ApiError(
            OrderError.PAYMENTS_UNAVAILABLE,
            "Webhooks are not configured (RAZORPAY_WEBHOOK_SECRET).",
        )
    if not razorpay.webhook_signature_valid(raw_body=raw_body, signature=signature):
        raise ApiError(PaymentError.SIGNATURE_INVALID, "The webhook signature does not match.")
    try:
        payload = json.loads(raw_body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # not UTF-8 or not JSON; nested thousands deep
        payload = None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("event"), str)
        or not _storable(payload)
    ):
        raise ApiError(CommonError.INVALID, "The webhook body is not a Razorpay event.")
    # Razorpay always sends the id; should one ever be missing, the body itself dedupes.
    event_id = event_id.strip()[:100] or "sha256:" + hashlib.sha256(raw_body).hexdigest()
    with transaction.atomic():
        event, created = WebhookEvent.objects.get_or_create(
            event_id=event_id,
            defaults={"event_type": payload["event"][:64], "payload": payload},
        )
        if created:
            transaction.on_commit(lambda: _queue_webhook(event.pk))
    return event, created


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # json.loads would take NaN and Infinity


def _storable(payload) -> bool:
    """Whether PostgreSQL can keep it: jsonb and text hold no NUL and no lone surrogate."""
    pending = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and ("\x00" in value or _has_lone_surrogate(value)):
            return False
    return True


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _queue_webhook(event_pk: int) -> None:
    from payments.tasks import process_webhook_event

    queue_task(process_webhook_event, event_pk, recovered_by="the payments reconciler")


def _entity(payload: dict, name: str) -> dict:
    return ((payload.get("payload") or {}).get(name) or {}).get("entity") or {}


def _apply_event(event: WebhookEvent) -> str:
    payload = event.payload
    if event.event_type in {"payment.captured", "order.paid"}:
        entity = _entity(payload, "payment")
        if entity.get("status") != "captured":
            return f"ignored: payment status {entity.get('status')!r}"
        mark_paid(
            razorpay_order_id=str(entity.get("order_id") or ""),
            razorpay_payment_id=str(entity.get("id") or ""),
            amount_paise=int(entity.get("amount") or 0),
            currency=str(entity.get("currency") or ""),
            source=Source.WEBHOOK,
        )
        return "captured"
    if event.event_type == "payment.failed":
        entity = _entity(payload, "payment")
        payment_mark_failed(
            razorpay_order_id=str(entity.get("order_id") or ""),
            razorpay_payment_id=str(entity.get("id") or ""),
            reason=str(entity.get("error_description") or "failed"),
        )
        return "failed"
    if event.event_type in {"refund.processed", "refund.failed"}:
        entity = _entity(payload, "refund")
        refund = refund_settle(
            razorpay_refund_id=str(entity.get("id") or ""),
            razorpay_payment_id=str(entity.get("payment_id") or ""),
            processed=event.event_type == "refund.processed",
        )
        return "refund settled" if refund else "ignored: unknown refund"
    return "ignored"


def webhook_process(*, event_pk: int) -> WebhookEvent:
    """Applies one stored event, once: the event row is locked and marked processed."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event_pk)
        if event.processed_at is not None:
            return event
        try:
            outcome = _apply_event(event)
        except ApiError as refusal:
            # Recorded, not retried: the same event would be refused again.
            outcome = f"refused: {refusal.code}: {refusal.message}"
            logger.warning("webhook %s %s", event.event_id, outcome)
        event.processed_at = timezone.now()
        event.outcome = outcome[:300]
        event.save(update_fields=["processed_at", "outcome", "updated_at"])
    return event
