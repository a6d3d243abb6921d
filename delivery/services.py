"""Dispatch: offering a searching order to the nearest riders, and settling who takes it.

Lock order (extends the one in orders.services): Payment rows -> Order row -> Offer rows ->
Rider row. Every function here that locks more than one of them takes them in that order, so
two of them can never wait on each other. An offer is only ever decided under its order's lock:
that lock is what makes "exactly one rider wins" true, and the partial unique constraint
offer_one_accepted_per_order backs it up in the database.

Clients hear of offers only after commit (group messages to rider.<id>), and every follow-up
(expiry, next round) is a task taking ids, safe to run twice.
"""

import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from rest_framework import status

from core.exceptions import ApiError
from delivery.models import DispatchRound, Offer
from delivery.selectors import orders_searching_near, riders_nearest_eligible
from orders.models import Order, OrderEvent, OrderStatus
from orders.services import dispatch_request, order_cancel
from orders.state import Action, Actor, order_transition
from riders.models import Rider

logger = logging.getLogger(__name__)

NO_RIDER_REASON = "no_rider"
# A rider coming online re-triggers matching for at most this many nearby waiting orders.
REMATCH_ORDERS_LIMIT = 5


class OfferNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    message = "No such offer."


class OfferNotAvailable(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "offer_not_available"
    message = "This offer is no longer available."


def _rider_group(rider_id) -> str:
    from delivery.consumers import rider_group

    return rider_group(rider_id)


def _send_to_rider(rider_id, message: dict) -> None:
    """Best effort: a rider who is not connected sees live offers through me/offers/."""
    try:
        async_to_sync(get_channel_layer().group_send)(_rider_group(rider_id), message)
    except Exception:  # the channel layer (Redis) down must not undo a committed decision
        logger.exception("could not notify rider %s of %s", rider_id, message.get("type"))


def _place(point, address: str) -> dict:
    return {"lat": point.y, "lng": point.x, "address": address}


def offer_message(offer: Offer) -> dict:
    """The offer frame: the trip and the pay, nothing about the customer."""
    quote = offer.order.quote
    return {
        "type": "offer",
        "offer_id": str(offer.pk),
        "order_id": str(offer.order_id),
        "pickup": _place(quote.pickup_location, quote.pickup_address),
        "drop": _place(quote.drop_location, quote.drop_address),
        "distance_m": offer.distance_m,
        "pay_paise": offer.pay_paise,
        "expires_at": offer.expires_at.isoformat(),
    }


def _withdrawn_message(offer: Offer) -> dict:
    return {"type": "offer_withdrawn", "offer_id": str(offer.pk), "order_id": str(offer.order_id)}


def _searching_since(order: Order):
    """When the order last started searching (a released order starts again)."""
    event = (
        OrderEvent.objects.filter(order=order, to_status=OrderStatus.SEARCHING_RIDER)
        .order_by("-created_at")
        .first()
    )
    return event.created_at if event is not None else order.created_at


def _schedule_expiry(order_id) -> None:
    from delivery.tasks import expire_offers_for_order

    expire_offers_for_order.apply_async(
        args=[str(order_id)], countdown=settings.OFFER_TTL_SECONDS + 1
    )


def dispatch_round(*, order_id) -> DispatchRound | None:
    """Offers a searching order to the nearest eligible riders; None when there is nothing to do.

    Nothing to do: the order is gone, no longer searching, or still has a live offer (so a
    duplicate task does not start a second round). Each round searches DISPATCH_RADIUS_M wider
    than the last since the order started searching, up to DISPATCH_MAX_RADIUS_M. A round that
    finds nobody after DISPATCH_WINDOW_SECONDS of searching cancels the order (reason no_rider;
    a paid order is refunded by order_cancel); one that finds nobody earlier is retried by the
    sweep after DISPATCH_RETRY_SECONDS. Locks the order's Payment rows, then the Order row.
    """
    from payments.models import Payment

    with transaction.atomic():
        list(Payment.objects.select_for_update().filter(order_id=order_id).order_by("pk"))
        order = (
            Order.objects.select_for_update(of=("self",))
            .select_related("quote")
            .filter(pk=order_id)
            .first()
        )
        if order is None or order.status != OrderStatus.SEARCHING_RIDER:
            return None
        now = timezone.now()
        if Offer.objects.filter(
            order=order, status=Offer.Status.PENDING, expires_at__gt=now
        ).exists():
            return None
        since = _searching_since(order)
        rounds = DispatchRound.objects.filter(order=order)
        number = (rounds.aggregate(last=Max("number"))["last"] or 0) + 1
        step = rounds.filter(created_at__gte=since).count() + 1
        radius_m = min(settings.DISPATCH_RADIUS_M * step, settings.DISPATCH_MAX_RADIUS_M)
        candidates = riders_nearest_eligible(
            order_id=order.pk,
            pickup=order.quote.pickup_location,
            radius_m=radius_m,
            limit=settings.DISPATCH_OFFERS_PER_ROUND,
            now=now,
        )
        dispatch = DispatchRound.objects.create(
            order=order, number=number, radius_m=radius_m, offers_made=len(candidates)
        )
        if not candidates:
            if now - since >= timedelta(seconds=settings.DISPATCH_WINDOW_SECONDS):
                logger.info("order %s: no rider within the dispatch window; cancelling", order.pk)
                order_cancel(order_id=order.pk, actor=Actor.system(), reason=NO_RIDER_REASON)
            return dispatch
        expires_at = now + timedelta(seconds=settings.OFFER_TTL_SECONDS)
        offers = Offer.objects.bulk_create(
            [
                Offer(
                    order=order,
                    rider_id=candidate.rider_id,
                    round_number=number,
                    distance_m=candidate.distance_m,
                    pay_paise=settings.RIDER_FIXED_PAY_PER_ORDER_PAISE,
                    expires_at=expires_at,
                )
                for candidate in candidates
            ]
        )
        messages = [(offer.rider_id, offer_message(offer)) for offer in offers]

        def announce():
            for rider_id, message in messages:
                _send_to_rider(rider_id, message)
            _schedule_expiry(order.pk)

        transaction.on_commit(announce)
    logger.info("order %s: round %s offered to %d rider(s)", order_id, number, len(offers))
    return dispatch


def _lock_offer_and_order(*, offer_id, rider: Rider) -> tuple[Order, Offer]:
    """The rider's offer and its order, locked in the module's order: Order, then Offer."""
    order_id = (
        Offer.objects.filter(pk=offer_id, rider=rider).values_list("order_id", flat=True).first()
    )
    if order_id is None:
        raise OfferNotFound()
    order = Order.objects.select_for_update().get(pk=order_id)
    offer = Offer.objects.select_for_update().get(pk=offer_id)
    return order, offer


def offer_accept(*, offer_id, rider: Rider) -> Offer:
    """The rider takes the order: exactly one of any number of concurrent accepts succeeds.

    Locks the Order row first, then the Offer, then the Rider (see the module docstring). Under
    the order lock only a pending, unexpired offer of an order still searching_rider wins; every
    later caller finds the offer or the order moved on and gets OfferNotAvailable (409). The
    winner's order is assigned through order_transition, the rider goes on_delivery, and the
    order's other pending offers are withdrawn (their riders told after commit).
    """
    with transaction.atomic():
        order, offer = _lock_offer_and_order(offer_id=offer_id, rider=rider)
        now = timezone.now()
        if (
            offer.status != Offer.Status.PENDING
            or offer.expires_at <= now
            or order.status != OrderStatus.SEARCHING_RIDER
        ):
            raise OfferNotAvailable()
        locked_rider = Rider.objects.select_for_update().get(pk=rider.pk)
        if locked_rider.status != Rider.Status.ONLINE or not locked_rider.approved:
            raise OfferNotAvailable("Only an online, approved rider without a delivery can accept.")
        offer.status = Offer.Status.ACCEPTED
        offer.responded_at = now
        offer.save(update_fields=["status", "responded_at", "updated_at"])
        order = order_transition(
            order_id=order.pk,
            action=Action.ASSIGN,
            actor=Actor.rider(rider.user),
            rider=locked_rider,
        )
        locked_rider.status = Rider.Status.ON_DELIVERY
        locked_rider.status_changed_at = now
        locked_rider.save(update_fields=["status", "status_changed_at", "updated_at"])
        others = list(
            Offer.objects.select_for_update().filter(order=order, status=Offer.Status.PENDING)
        )
        Offer.objects.filter(pk__in=[other.pk for other in others]).update(
            status=Offer.Status.WITHDRAWN, updated_at=now
        )
        messages = [(other.rider_id, _withdrawn_message(other)) for other in others]
        transaction.on_commit(
            lambda: [_send_to_rider(rider_id, message) for rider_id, message in messages]
        )
    logger.info("order %s accepted by rider %s (offer %s)", order.pk, rider.pk, offer.pk)
    offer.order = order
    return offer


def offer_decline(*, offer_id, rider: Rider) -> Offer:
    """The rider says no; when that was the order's last pending offer, the next round starts.

    Locks the Order row, then the Offer.
    """
    with transaction.atomic():
        order, offer = _lock_offer_and_order(offer_id=offer_id, rider=rider)
        if offer.status != Offer.Status.PENDING:
            raise OfferNotAvailable()
        offer.status = Offer.Status.DECLINED
        offer.responded_at = timezone.now()
        offer.save(update_fields=["status", "responded_at", "updated_at"])
        _next_round_when_unanswered(order)
    offer.order = order
    return offer


def _next_round_when_unanswered(order: Order) -> None:
    """Queues the next round after commit if the order still searches with no pending offer."""
    if order.status != OrderStatus.SEARCHING_RIDER:
        return
    if Offer.objects.filter(order=order, status=Offer.Status.PENDING).exists():
        return
    transaction.on_commit(lambda: dispatch_request(order_id=order.pk))


def offers_expire(*, order_id=None) -> int:
    """Marks pending offers past expires_at expired (one order's, or all); returns how many.

    Each order is settled in its own transaction under its lock (Order, then Offers), so an
    accept racing the expiry either wins first or finds the offer expired. An order left with
    no pending offer and still searching gets its next round after commit.
    """
    now = timezone.now()
    stale = Offer.objects.filter(status=Offer.Status.PENDING, expires_at__lte=now)
    if order_id is not None:
        stale = stale.filter(order_id=order_id)
    expired = 0
    for stale_order_id in set(stale.values_list("order_id", flat=True)):
        with transaction.atomic():
            order = Order.objects.select_for_update().get(pk=stale_order_id)
            expired += Offer.objects.filter(
                order=order, status=Offer.Status.PENDING, expires_at__lte=now
            ).update(status=Offer.Status.EXPIRED, updated_at=now)
            _next_round_when_unanswered(order)
    if expired:
        logger.info("expired %d offer(s)", expired)
    return expired


def dispatch_sweep() -> int:
    """The periodic safety net: expire stale offers, re-dispatch orders left waiting.

    Returns how many orders were handed to dispatch.
    """
    from delivery.selectors import orders_waiting_for_dispatch

    offers_expire()
    waiting = orders_waiting_for_dispatch()
    for order_id in waiting:
        dispatch_request(order_id=order_id)
    return len(waiting)


def dispatch_rematch_for_rider(*, rider_id) -> int:
    """A rider came online: offer them the oldest orders searching near them (bounded).

    Nothing for a rider without a known position; their first ping and the sweep cover it.
    """
    rider = Rider.objects.filter(pk=rider_id, status=Rider.Status.ONLINE).first()
    if rider is None or rider.last_location is None:
        return 0
    order_ids = orders_searching_near(point=rider.last_location, limit=REMATCH_ORDERS_LIMIT)
    for order_id in order_ids:
        dispatch_request(order_id=order_id)
    return len(order_ids)
