"""Payment tasks: webhook processing, refunds and the periodic reconciliation with Razorpay."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from payments.razorpay import RazorpayUnavailable

logger = logging.getLogger(__name__)


@shared_task(
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=5,
)
def process_webhook_event(event_pk: int) -> None:
    """Applies one stored Razorpay webhook event; a second run finds it processed and stops."""
    from payments.services.webhooks import webhook_process

    event = webhook_process(event_pk=event_pk)
    logger.info("webhook %s %s: %s", event.event_type, event.event_id, event.outcome)


@shared_task(
    ignore_result=True,
    autoretry_for=(RazorpayUnavailable, OperationalError, InterfaceError),
    retry_backoff=10,
    retry_backoff_max=600,
    max_retries=8,
)
def send_refund(refund_id: str) -> None:
    """Sends one refund to Razorpay; every retry carries the same X-Refund-Idempotency key."""
    from payments.services.refunds import refund_send

    refund = refund_send(refund_id=refund_id)
    logger.info("refund %s: %s", refund.pk, refund.status)


@shared_task(ignore_result=True)
def reconcile_pending_payments() -> None:
    """Every 10 min: ask Razorpay about payments still pending and settle their captures, after
    queueing again the refunds and webhook events whose task never ran (broker down).

    Applies the one locked mark_paid used by verify and the webhook, so a capture that was
    already settled is a no-op and one that arrived for a cancelled order is refunded.
    """
    from payments.services.reconciliation import payments_reconcile, payments_requeue_stranded

    payments_requeue_stranded(
        older_than=timedelta(minutes=settings.PAYMENT_RECONCILE_AFTER_MINUTES)
    )
    applied = payments_reconcile(
        older_than=timedelta(minutes=settings.PAYMENT_RECONCILE_AFTER_MINUTES)
    )
    logger.info("reconcile_pending_payments: %s captures applied", applied)
