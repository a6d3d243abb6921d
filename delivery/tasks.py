"""Dispatch tasks: offering orders to riders and recovering from offers nobody answered.

Each takes ids, reloads, and is safe to run twice (delivery.services re-checks under locks).
"""

import logging

from celery import shared_task

from delivery.services.dispatch import (
    dispatch_rematch_for_rider,
    dispatch_round,
    dispatch_sweep,
    offers_expire,
)

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sweep_stale_offers() -> None:
    """Every 10 s: expire offers past their life and re-dispatch orders left unassigned."""
    redispatched = dispatch_sweep()
    if redispatched:
        logger.info("sweep_stale_offers: %d order(s) handed back to dispatch", redispatched)


@shared_task(ignore_result=True)
def dispatch_order(order_id: str) -> None:
    """Runs one dispatch round for an order that is searching for a rider (high queue).

    Queued after commit by delivery.services.dispatch.dispatch_request.
    """
    dispatch_round(order_id=order_id)


@shared_task(ignore_result=True)
def expire_offers_for_order(order_id: str) -> None:
    """Queued with a countdown of the offer's life: expires what nobody answered (high queue)."""
    offers_expire(order_id=order_id)


@shared_task(ignore_result=True)
def rematch_rider(rider_id: str) -> None:
    """A rider came online: offer them the oldest orders searching near them (high queue).

    Queued after commit by delivery.services.dispatch.dispatch_rematch_request, off the rider's
    request.
    """
    dispatch_rematch_for_rider(rider_id=rider_id)
