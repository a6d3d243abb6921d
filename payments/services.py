"""Writes for payments: Razorpay orders, the one locked mark_paid, failures, refunds, webhook
events and reconciliation.

Rows are locked in the project's lock order (core.locks). No function holds a row lock while
it waits on Razorpay.
"""

import hashlib
import json
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import status

from accounts.models import User
from core import realtime
from core.exceptions import ApiError
from core.queueing import queue_task
from orders.models import Order, OrderStatus, PaymentMethod, PaymentStatus
from orders.selectors import order_get_for_customer
from orders.services import PaymentsUnavailable, payments_require_enabled
from orders.state import Action, Actor, order_transition
from payments import razorpay
from payments.models import Payment, Refund, WebhookEvent

logger = logging.getLogger(__name__)


class PaymentNotExpected(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "payment_not_expected"
    message = "This order is not waiting for an online payment."


class SignatureInvalid(ApiError):
    code = "signature_invalid"
    message = "The payment signature does not match."


class PaymentNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    message = "No such payment."


class PaymentMismatch(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "payment_mismatch"
    message = "The payment does not match the order's amount or currency; it will be refunded."


class NotRefundable(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "not_refundable"
    message = "This order has no captured payment left to refund."


class Source:
    VERIFY = "verify"
    WEBHOOK = "webhook"
    RECONCILER = "reconciler"


def payment_create(*, customer: User, order_id) -> Payment:
    """The Razorpay order a customer's checkout pays; an unpaid one is reused, not remade."""
    payments_require_enabled()
    order = order_get_for_customer(customer=customer, order_id=order_id)
    if (
        order.payment_method != PaymentMethod.RAZORPAY
        or order.status != OrderStatus.PAYMENT_PENDING
        or order.payment_status not in {PaymentStatus.PENDING, PaymentStatus.FAILED}
    ):
        raise PaymentNotExpected()
    reusable = (
        Payment.objects.filter(
            order=order,
            status=Payment.Status.CREATED,
            amount_paise=order.amount_paise,
            currency=order.currency,
        )
        .order_by("-created_at")
        .first()
    )
    if reusable is not None:
        return reusable
    # No lock is held across this call. Two concurrent calls may each make a Razorpay order;
    # only one can be paid for this order: a second capture is refunded by mark_paid.
    remote = razorpay.create_order(
        amount_paise=order.amount_paise,
        currency=order.currency,
        receipt=str(order.pk),
        notes={"order_id": str(order.pk)},
    )
    return Payment.objects.create(
        order=order,
        razorpay_order_id=remote["id"],
        amount_paise=order.amount_paise,
        currency=order.currency,
    )


def _checks_against_order(
    *, payment: Payment, order: Order, amount_paise: int, currency: str
) -> str:
    """What is wrong with a capture's amount or currency, or "" when it is what we asked."""
    problems = []
    if amount_paise != order.amount_paise or amount_paise != payment.amount_paise:
        problems.append(f"amount {amount_paise} != order amount {order.amount_paise}")
    if (currency or "").upper() != order.currency or order.currency != payment.currency:
        problems.append(f"currency {currency!r} != order currency {order.currency!r}")
    return "; ".join(problems)


def mark_paid(
    *,
    razorpay_order_id: str,
    razorpay_payment_id: str,
    amount_paise: int,
    currency: str,
    source: str,
) -> Payment:
    """Records a capture; the one path to a paid order, used by verify, webhook and reconciler.

    Locks the Payment row, then the Order row (the module's lock order), so concurrent reports
    of one capture are serialised: the first settles it, the rest find it captured and return
    without a change. A capture whose amount or currency differs from the stored order is
    recorded as a mismatch, refunded and refused (PaymentMismatch); it never pays the order.
    A capture for an order that no longer wants it (cancelled, failed, or already paid by
    another attempt) is recorded and refunded automatically.
    """
    mismatch = ""
    with transaction.atomic():
        payment = (
            Payment.objects.select_for_update().filter(razorpay_order_id=razorpay_order_id).first()
        )
        if payment is None:
            raise PaymentNotFound(f"No payment for Razorpay order {razorpay_order_id}.")
        order = Order.objects.select_for_update().get(pk=payment.order_id)

        if payment.razorpay_payment_id == razorpay_payment_id:
            return payment  # this capture was recorded already: nothing to do
        if payment.status == Payment.Status.CAPTURED:
            # A second capture on the same Razorpay order: the money was taken twice.
            refund_request(
                payment=payment,
                order=order,
                razorpay_payment_id=razorpay_payment_id,
                amount_paise=amount_paise,
                reason="Second capture for the same Razorpay order",
                marks_order=False,
            )
            return payment

        mismatch = _checks_against_order(
            payment=payment, order=order, amount_paise=amount_paise, currency=currency
        )
        payment.razorpay_payment_id = razorpay_payment_id
        payment.captured_at = timezone.now()
        payment.captured_by = source
        if mismatch:
            payment.status = Payment.Status.MISMATCH
            payment.last_error = mismatch[:500]
            payment.save(
                update_fields=[
                    "status",
                    "razorpay_payment_id",
                    "captured_at",
                    "captured_by",
                    "last_error",
                    "updated_at",
                ]
            )
            logger.error("payment %s refused (%s): %s", razorpay_payment_id, source, mismatch)
            if amount_paise > 0:
                refund_request(
                    payment=payment,
                    order=order,
                    razorpay_payment_id=razorpay_payment_id,
                    amount_paise=amount_paise,
                    reason=f"Mismatched capture: {mismatch}"[:300],
                    marks_order=False,
                )
        else:
            payment.status = Payment.Status.CAPTURED
            payment.save(
                update_fields=[
                    "status",
                    "razorpay_payment_id",
                    "captured_at",
                    "captured_by",
                    "updated_at",
                ]
            )
            wanted = order.status == OrderStatus.PAYMENT_PENDING and order.payment_status in {
                PaymentStatus.PENDING,
                PaymentStatus.FAILED,
            }
            if wanted:
                order.payment_status = PaymentStatus.PAID
                order.save(update_fields=["payment_status", "updated_at"])
                order_transition(
                    order_id=order.pk,
                    action=Action.MARK_PAID,
                    actor=Actor.system(),
                    reason=f"Razorpay payment {razorpay_payment_id} captured ({source})",
                )
            else:
                logger.warning(
                    "capture %s for order %s (%s, %s) is refunded",
                    razorpay_payment_id,
                    order.pk,
                    order.status,
                    order.payment_status,
                )
                refund_request(
                    payment=payment,
                    order=order,
                    razorpay_payment_id=razorpay_payment_id,
                    amount_paise=amount_paise,
                    reason=f"Captured after the order was {order.status}",
                    # A cancelled order's money is on its way back; a paid one stays paid.
                    marks_order=order.payment_status != PaymentStatus.PAID,
                )
    if mismatch:
        raise PaymentMismatch(mismatch)
    return payment


def payment_mark_failed(*, razorpay_order_id: str, razorpay_payment_id: str, reason: str) -> None:
    """A failed attempt; the customer may try again on the same Razorpay order."""
    with transaction.atomic():
        payment = (
            Payment.objects.select_for_update().filter(razorpay_order_id=razorpay_order_id).first()
        )
        if payment is None or payment.status != Payment.Status.CREATED:
            return
        order = Order.objects.select_for_update().get(pk=payment.order_id)
        payment.last_error = f"{razorpay_payment_id}: {reason}"[:500]
        payment.save(update_fields=["last_error", "updated_at"])
        if order.payment_status == PaymentStatus.PENDING:
            order.payment_status = PaymentStatus.FAILED
            order.save(update_fields=["payment_status", "updated_at"])


def payment_verify(
    *, customer: User, razorpay_order_id: str, razorpay_payment_id: str, razorpay_signature: str
) -> Order:
    """Checkout's success callback: check its signature, then ask Razorpay what was captured.

    The signature proves the payment belongs to our Razorpay order; the amount and currency
    checked by mark_paid come from Razorpay's own record of the payment, never the client.
    """
    payments_require_enabled()
    payment = (
        Payment.objects.filter(razorpay_order_id=razorpay_order_id, order__customer=customer)
        .only("pk", "order_id")
        .first()
    )
    if payment is None:
        raise PaymentNotFound(fields={"razorpay_order_id": ["No such payment of yours."]})
    if not razorpay.checkout_signature_valid(
        razorpay_order_id=razorpay_order_id,
        razorpay_payment_id=razorpay_payment_id,
        signature=razorpay_signature,
    ):
        raise SignatureInvalid(fields={"razorpay_signature": ["Does not match this payment."]})
    remote = razorpay.fetch_payment(razorpay_payment_id)
    if remote.get("order_id") != razorpay_order_id:
        raise SignatureInvalid("That payment belongs to another order.")
    if remote.get("status") == "captured":
        mark_paid(
            razorpay_order_id=razorpay_order_id,
            razorpay_payment_id=razorpay_payment_id,
            amount_paise=int(remote.get("amount") or 0),
            currency=str(remote.get("currency") or ""),
            source=Source.VERIFY,
        )
    elif remote.get("status") == "failed":
        payment_mark_failed(
            razorpay_order_id=razorpay_order_id,
            razorpay_payment_id=razorpay_payment_id,
            reason=str(remote.get("error_description") or "failed"),
        )
    # "authorized": not captured yet; the payment.captured webhook or the reconciler settles it.
    return Order.objects.select_related("quote", "rider__user").get(pk=payment.order_id)


def payments_lock_before_cancel(order_id, action: str) -> None:
    """Before a cancel locks its order: the order's payments, in the lock order (core.locks), so
    a capture arriving at the same moment waits for the cancel and is then refunded by
    mark_paid, or is seen here and refunded by refund_on_cancel."""
    if action == Action.CANCEL:
        list(
            Payment.objects.select_for_update()
            .filter(order_id=order_id)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def refund_on_cancel(move) -> None:
    """A cancelled order's money goes back: each capture of a paid order is refunded; an order
    still waiting for its payment waits no more (a capture that still arrives finds the order
    cancelled and is refunded by mark_paid)."""
    if move.action != Action.CANCEL:
        return
    order = move.order
    if order.payment_status == PaymentStatus.PAID:
        captured = Payment.objects.filter(order=order, status=Payment.Status.CAPTURED)
        for payment in captured.order_by("pk"):
            refund_request(
                payment=payment,
                order=order,
                razorpay_payment_id=payment.razorpay_payment_id,
                amount_paise=payment.amount_paise,
                reason=f"Order cancelled by {move.actor.kind}",
            )
    elif order.payment_status in {PaymentStatus.PENDING, PaymentStatus.FAILED}:
        order.payment_status = PaymentStatus.NONE
        order.save(update_fields=["payment_status", "updated_at"])


def refund_request(
    *,
    payment: Payment,
    order: Order,
    razorpay_payment_id: str,
    amount_paise: int,
    reason: str,
    marks_order: bool = True,
) -> Refund:
    """Records a refund to send and sends it after commit; one live refund per capture.

    Expects the Payment and Order row locks. `marks_order` moves the order's payment status
    to refund_pending (its money is going back); False for refunds of extra captures.
    """
    existing = (
        Refund.objects.filter(razorpay_payment_id=razorpay_payment_id)
        .exclude(status=Refund.Status.FAILED)
        .first()
    )
    if existing is not None:
        return existing
    refund = Refund.objects.create(
        payment=payment,
        razorpay_payment_id=razorpay_payment_id,
        idempotency_key=uuid.uuid4().hex,
        amount_paise=amount_paise,
        reason=reason[:300],
    )
    if marks_order:
        order.payment_status = PaymentStatus.REFUND_PENDING
        order.save(update_fields=["payment_status", "updated_at"])
    transaction.on_commit(lambda: _queue_refund(refund.pk))
    return refund


def _queue_refund(refund_id) -> None:
    from payments.tasks import send_refund

    queue_task(send_refund, str(refund_id), recovered_by="the payments reconciler")


def _settle_order_after_refund(order: Order) -> None:
    """refund_pending -> refunded once none of the order's refunds is still under way and the
    money of every capture went back. A capture whose refund failed (and was not refunded
    again since) keeps the order refund_pending: the customer has not been paid back, and ops
    see the failed refund (the admin, the ops console's alerts) and refund it again."""
    if order.payment_status != PaymentStatus.REFUND_PENDING:
        return
    refunds = Refund.objects.filter(payment__order=order)
    if refunds.filter(status__in=[Refund.Status.PENDING, Refund.Status.SUBMITTED]).exists():
        return
    paid_back = refunds.filter(status=Refund.Status.PROCESSED).values("payment_id")
    if refunds.filter(status=Refund.Status.FAILED).exclude(payment_id__in=paid_back).exists():
        return
    order.payment_status = PaymentStatus.REFUNDED
    order.save(update_fields=["payment_status", "updated_at"])


def _lock_refund(refund_id) -> tuple[Refund, Order]:
    """Payment, then Order, then Refund: the module's lock order."""
    payment_id = Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id)
    payment = Payment.objects.select_for_update().get(pk=payment_id)
    order = Order.objects.select_for_update().get(pk=payment.order_id)
    refund = Refund.objects.select_for_update().get(pk=refund_id)
    return refund, order


def refund_send(*, refund_id) -> Refund:
    """Asks Razorpay for the refund, always with the refund's own X-Refund-Idempotency key.

    Safe to run again (a retried task, two workers): Razorpay answers a repeated key with the
    refund it already made. Raises RazorpayUnavailable for the task to retry later.
    """
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        return refund
    Refund.objects.filter(pk=refund.pk).update(attempts=F("attempts") + 1)
    try:
        remote = razorpay.refund_payment(
            payment_id=refund.razorpay_payment_id,
            amount_paise=refund.amount_paise,
            idempotency_key=refund.idempotency_key,
            notes={"order_id": str(refund.payment.order_id), "refund": str(refund.pk)},
        )
    except razorpay.RazorpayRejected as error:
        with transaction.atomic():
            refund, order = _lock_refund(refund_id)
            if refund.status == Refund.Status.PENDING:
                refund.status = Refund.Status.FAILED
                refund.last_error = error.message[:500]
                refund.save(update_fields=["status", "last_error", "updated_at"])
                _refund_failed_alert(order)
        logger.error("refund %s refused by Razorpay: %s", refund_id, error.message)
        return refund
    with transaction.atomic():
        refund, order = _lock_refund(refund_id)
        if refund.status != Refund.Status.PENDING:
            return refund
        refund.razorpay_refund_id = remote.get("id") or None
        refund.status = (
            Refund.Status.PROCESSED
            if remote.get("status") == "processed"
            else Refund.Status.SUBMITTED
        )
        refund.save(update_fields=["razorpay_refund_id", "status", "updated_at"])
        _settle_order_after_refund(order)
    return refund


def refund_settle(
    *, razorpay_refund_id: str, razorpay_payment_id: str, processed: bool
) -> Refund | None:
    """Razorpay's refund.processed / refund.failed webhooks finish what refund_send began."""
    candidate = (
        Refund.objects.filter(razorpay_refund_id=razorpay_refund_id).first()
        or Refund.objects.filter(
            razorpay_payment_id=razorpay_payment_id, status=Refund.Status.SUBMITTED
        ).first()
    )
    if candidate is None:
        return None
    with transaction.atomic():
        refund, order = _lock_refund(candidate.pk)
        if refund.status in {Refund.Status.PROCESSED, Refund.Status.FAILED}:
            return refund
        refund.razorpay_refund_id = razorpay_refund_id
        refund.status = Refund.Status.PROCESSED if processed else Refund.Status.FAILED
        refund.save(update_fields=["razorpay_refund_id", "status", "updated_at"])
        _settle_order_after_refund(order)
        if not processed:
            _refund_failed_alert(order)
    return refund


def _refund_failed_alert(order: Order) -> None:
    """The ops consoles show the "refund failed" alert now, not at their next snapshot."""
    message = realtime.ops_alerts_changed_message(alert="refund_failed", order_id=order.pk)
    realtime.send_on_commit(realtime.OPS_GROUP, message)


def order_refund(*, order_id, user: User, reason: str = "") -> Order:
    """Ops refund an order's captured payment in full (orders.refund_order permission)."""
    if not user.has_perm("orders.refund_order"):
        raise ApiError(
            "You need the refund permission.",
            code="permission_denied",
            status_code=status.HTTP_403_FORBIDDEN,
        )
    with transaction.atomic():
        payments = list(
            Payment.objects.select_for_update()
            .filter(order_id=order_id, status=Payment.Status.CAPTURED)
            .order_by("pk")
        )
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.payment_status != PaymentStatus.PAID or not payments:
            raise NotRefundable()
        for payment in payments:
            refund_request(
                payment=payment,
                order=order,
                razorpay_payment_id=payment.razorpay_payment_id,
                amount_paise=payment.amount_paise,
                reason=(reason or f"Refunded by {user}")[:300],
            )
    return order


# --- Webhooks -------------------------------------------------------------------------------


def webhook_receive(*, raw_body: bytes, signature: str, event_id: str) -> tuple[WebhookEvent, bool]:
    """Checks the signature over the raw body and stores the event once; returns (event, new).

    A new event is processed by a Celery task after commit; a redelivered one is ignored.
    """
    if not settings.RAZORPAY_WEBHOOK_SECRET:
        raise PaymentsUnavailable("Webhooks are not configured (RAZORPAY_WEBHOOK_SECRET).")
    if not razorpay.webhook_signature_valid(raw_body=raw_body, signature=signature):
        raise SignatureInvalid("The webhook signature does not match.")
    try:
        payload = json.loads(raw_body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # not UTF-8 or not JSON; nested thousands deep
        payload = None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("event"), str)
        or not _storable(payload)
    ):
        raise ApiError("The webhook body is not a Razorpay event.", code="invalid")
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


# --- Reconciliation -------------------------------------------------------------------------


def payments_requeue_stranded(*, older_than: timedelta) -> int:
    """Queues again the refunds and webhook events whose task was never queued (the broker was
    down when they were saved) or was lost; returns how many. Both tasks are safe to run twice:
    a refund keeps its idempotency key, a processed event is skipped.
    """
    from payments.tasks import process_webhook_event, send_refund

    cutoff = timezone.now() - older_than
    refunds = Refund.objects.filter(status=Refund.Status.PENDING, created_at__lte=cutoff)
    events = WebhookEvent.objects.filter(processed_at__isnull=True, received_at__lte=cutoff)
    queued = 0
    for refund_id in refunds.values_list("pk", flat=True)[:RECONCILE_BATCH]:
        queued += queue_task(send_refund, str(refund_id), recovered_by="the next reconcile")
    for event_pk in events.values_list("pk", flat=True)[:RECONCILE_BATCH]:
        queued += queue_task(process_webhook_event, event_pk, recovered_by="the next reconcile")
    if queued:
        logger.info("requeued %d stranded refund(s) and webhook event(s)", queued)
    return queued


RECONCILE_BATCH = 200
RECONCILE_GIVE_UP_AFTER = timedelta(days=3)


def payments_reconcile(*, older_than: timedelta) -> int:
    """Asks Razorpay about payments pending longer than `older_than`; settles their captures.

    For missed webhooks and customers who closed the app before verify. Payments older than
    three days are left alone (a checkout is long dead by then). Returns captures applied.
    """
    if not settings.PAYMENTS_ENABLED:
        return 0
    now = timezone.now()
    pending = Payment.objects.filter(
        status=Payment.Status.CREATED,
        created_at__lte=now - older_than,
        created_at__gte=now - RECONCILE_GIVE_UP_AFTER,
    ).order_by("created_at")[:RECONCILE_BATCH]
    applied = 0
    for payment in pending:
        try:
            items = razorpay.order_payments(payment.razorpay_order_id)
        except ApiError as error:
            logger.warning("reconcile %s: %s", payment.razorpay_order_id, error.message)
            continue
        for item in items:
            if item.get("status") != "captured":
                continue
            try:
                mark_paid(
                    razorpay_order_id=payment.razorpay_order_id,
                    razorpay_payment_id=str(item.get("id") or ""),
                    amount_paise=int(item.get("amount") or 0),
                    currency=str(item.get("currency") or ""),
                    source=Source.RECONCILER,
                )
            except ApiError as refusal:
                logger.warning(
                    "reconcile %s refused: %s", payment.razorpay_order_id, refusal.message
                )
            applied += 1
    return applied
