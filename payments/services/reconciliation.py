"""The sweeps that catch what a lost task or webhook left: stranded refunds and events queued
again, payments asked of Razorpay.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from core.exceptions import ApiError
from core.queueing import queue_task
from payments import razorpay
from payments.models import Payment, Refund, WebhookEvent
from payments.services.checkout import Source, mark_paid

logger = logging.getLogger(__name__)


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
