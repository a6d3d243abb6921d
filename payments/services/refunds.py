"""Money going back: a cancelled order's captures, a capture that came too late or did not
match, and ops' refunds; each sent to Razorpay by a task and settled by its webhook.
"""

import logging
import uuid

from django.db import transaction
from django.db.models import F

from accounts.models import User
from core import realtime
from core.exceptions import ApiError, CommonError
from core.queueing import queue_task
from orders.models import Order, PaymentStatus
from orders.state import Action
from payments import razorpay
from payments.errors import PaymentError
from payments.models import Payment, Refund

logger = logging.getLogger(__name__)


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
        raise ApiError(CommonError.PERMISSION_DENIED, "You need the refund permission.")
    with transaction.atomic():
        payments = list(
            Payment.objects.select_for_update()
            .filter(order_id=order_id, status=Payment.Status.CAPTURED)
            .order_by("pk")
        )
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.payment_status != PaymentStatus.PAID or not payments:
            raise ApiError(PaymentError.NOT_REFUNDABLE)
        for payment in payments:
            refund_request(
                payment=payment,
                order=order,
                razorpay_payment_id=payment.razorpay_payment_id,
                amount_paise=payment.amount_paise,
                reason=(reason or f"Refunded by {user}")[:300],
            )
    return order
