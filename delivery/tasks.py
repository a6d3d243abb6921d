"""Dispatch tasks: offering orders to riders and recovering from offers nobody answered."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sweep_stale_offers() -> None:
    """Every 10 s: expire offers past their ~30 s life and re-dispatch orders left unassigned.

    Nothing to sweep yet: offers and the dispatch engine arrive with the dispatch issue, which
    fills this in (expire offers with expires_at < now, log the outcome, and queue the next
    dispatch round, wider radius, for each order still searching_rider).
    """
    logger.debug("sweep_stale_offers: nothing to do yet (no offer model)")


@shared_task(ignore_result=True)
def dispatch_order(order_id: str) -> None:
    """Offers an order that reached searching_rider to nearby riders (high queue).

    Queued after commit by orders.services.dispatch_request. The dispatch issue fills this in
    (k nearest eligible riders by PostGIS KNN, ~30 s offers, widening rounds); until then it only
    logs, and the order waits in searching_rider, where the stale-offer sweep will find it.
    """
    logger.info("dispatch_order: order %s is waiting for dispatch (not built yet)", order_id)
