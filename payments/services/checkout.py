"""A customer's online payment: the Razorpay order, the one locked mark_paid (from the app's
verify, a webhook or the reconciler), and failures.
"""

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from core.exceptions import ApiError, CommonError
from core.metrics import PAYMENT_MISMATCHES
from orders.models import Order, OrderStatus, PaymentMethod, PaymentStatus
from orders.selectors import order_get_for_customer
from orders.services import payments_require_enabled
from orders.state import Action, Actor, order_transition
from payments import razorpay
from payments.errors import PaymentError
from payments.models import Payment
from payments.services.refunds import refund_request

logger = logging.getLogger(__name__)


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
        raise ApiError(PaymentError.NOT_EXPECTED)
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
    recorded as a mismatch, refunded and refused (PaymentError.MISMATCH); it never pays the order.
    A capture for an order that no longer wants it (cancelled, failed, or already paid by
    another attempt) is recorded and refunded automatically.
    """
    mismatch = ""
    with transaction.atomic():
        payment = (
            Payment.objects.select_for_update().filter(razorpay_order_id=razorpay_order_id).first()
        )
        if payment is None:
            raise ApiError(
                CommonError.NOT_FOUND, f"No payment for Razorpay order {razorpay_order_id}."
            )
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
            PAYMENT_MISMATCHES.inc_on_commit(value=source)
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
        raise ApiError(PaymentError.MISMATCH, mismatch)
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
        raise ApiError(
            CommonError.NOT_FOUND,
            "No such payment.",
            fields={"razorpay_order_id": ["No such payment of yours."]},
        )
    if not razorpay.checkout_signature_valid(
        razorpay_order_id=razorpay_order_id,
        razorpay_payment_id=razorpay_payment_id,
        signature=razorpay_signature,
    ):
        raise ApiError(
            PaymentError.SIGNATURE_INVALID,
            fields={"razorpay_signature": ["Does not match this payment."]},
        )
    remote = razorpay.fetch_payment(razorpay_payment_id)
    if remote.get("order_id") != razorpay_order_id:
        raise ApiError(PaymentError.SIGNATURE_INVALID, "That payment belongs to another order.")
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
