"""Payment tasks."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def reconcile_pending_payments() -> None:
    """Every 10 min: ask Razorpay about payments still pending and settle them.

    Nothing to reconcile yet: payments arrive with the Razorpay issue, which fills this in
    (fetch each pending Razorpay order older than a few minutes and apply the one locked
    mark_paid / mark_failed used by verify and the webhook).
    """
    logger.info("reconcile_pending_payments: nothing to do yet (no payment model)")
