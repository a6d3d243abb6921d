"""Dispatch: offering a searching order to the nearest riders, and settling who takes it.

Rows are locked in the project's lock order (core.locks). An offer is only ever decided under its
order's lock: that lock is what makes "exactly one rider wins" true, and the partial unique
constraint offer_one_accepted_per_order backs it up in the database.

Clients hear of offers only after commit (group messages to rider.<id>), and every follow-up
(expiry, next round) is a task taking ids, safe to run twice.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from prometheus_client import Histogram

from core import realtime
from core.exceptions import ApiError, CommonError, suppressed
from core.metrics import OFFERS_EXPIRED, OFFERS_MADE, ORDERS_CANCELLED_NO_RIDER
from core.queueing import queue_task
from delivery.errors import DeliveryError
from delivery.models import DispatchRound, Offer
from delivery.selectors import orders_searching_near, riders_nearest_eligible
from orders.errors import OrderError
from orders.models import Order, OrderEvent, OrderStatus
from orders.selectors import cash_to_collect_paise, place
from orders.services import order_cancel
from orders.state import Action, Actor, order_transition
from riders.errors import RiderError
from riders.models import Rider

logger = logging.getLogger(__name__)


NO_RIDER_REASON = "no_rider"
ACCEPT_SECONDS = Histogram(
    "dispatch_accept_seconds",
    "From an order starting to search for a rider to a rider accepting it.",
    buckets=(5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900),
)
# A rider coming online re-triggers matching for at most this many nearby waiting orders.
REMATCH_ORDERS_LIMIT = 5


def _send_to_rider(rider_id, message: dict) -> None:
    """Best effort: a rider who is not connected sees live offers through me/offers/."""
    realtime.send(realtime.rider_group(rider_id), message)


def offer_message(offer: Offer) -> dict:
    """The offer frame: the trip, the pay and any cash to collect, nothing about the customer."""
    order = offer.order
    quote = order.quote
    return {
        "type": "offer",
        "offer_id": str(offer.pk),
        "order_id": str(offer.order_id),
        "pickup": place(quote.pickup_location, quote.pickup_address),
        "drop": place(quote.drop_location, quote.drop_address),
        "distance_m": offer.distance_m,
        "pay_paise": offer.pay_paise,
        "cash_to_collect_paise": cash_to_collect_paise(order),
        "expires_at": offer.expires_at.isoformat(),
    }


def _withdrawn_message(offer_id, order_id, reason: str) -> dict:
    return {
        "type": "offer_withdrawn",
        "offer_id": str(offer_id),
        "order_id": str(order_id),
        "reason": reason,
    }


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
    sweep after DISPATCH_RETRY_SECONDS. Locks the Order row; the cancel is a transaction of
    its own after the round's, which takes the order's payments first (core.locks).
    """
    with transaction.atomic():
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
        if not candidates and now - since < timedelta(seconds=settings.DISPATCH_WINDOW_SECONDS):
            return dispatch  # the sweep tries again
        offers = _offer_to(order, candidates, round_number=number, now=now) if candidates else []
    if not offers:
        logger.info("order %s: no rider within the dispatch window; cancelling", order_id)
        with suppressed(OrderError.INVALID_TRANSITION):  # a rider or ops took it meanwhile
            order_cancel(
                order_id=order_id,
                actor=Actor.system(),
                reason=NO_RIDER_REASON,
                if_status=OrderStatus.SEARCHING_RIDER,
            )
            ORDERS_CANCELLED_NO_RIDER.inc()  # committed: order_cancel's transaction is its own
        return dispatch
    logger.info("order %s: round %s offered to %d rider(s)", order_id, number, len(offers))
    return dispatch


def _offer_to(order: Order, candidates, *, round_number: int, now) -> list[Offer]:
    """A round's offers, one per candidate, announced to their riders after commit."""
    expires_at = now + timedelta(seconds=settings.OFFER_TTL_SECONDS)
    offers = Offer.objects.bulk_create(
        [
            Offer(
                order=order,
                rider_id=candidate.rider_id,
                round_number=round_number,
                distance_m=candidate.distance_m,
                pay_paise=settings.RIDER_FIXED_PAY_PER_ORDER_PAISE,
                expires_at=expires_at,
            )
            for candidate in candidates
        ]
    )
    messages = [(realtime.rider_group(o.rider_id), offer_message(o)) for o in offers]
    OFFERS_MADE.inc_on_commit(len(offers))

    def announce():
        realtime.send_many(messages)
        _schedule_expiry(order.pk)

    transaction.on_commit(announce)
    return offers


def _lock_offer_and_order(*, offer_id, rider: Rider) -> tuple[Order, Offer]:
    """The rider's offer and its order, locked in the module's order: Order, then Offer."""
    order_id = (
        Offer.objects.filter(pk=offer_id, rider=rider).values_list("order_id", flat=True).first()
    )
    if order_id is None:
        raise ApiError(CommonError.NOT_FOUND, "No such offer.")
    order = Order.objects.select_for_update().get(pk=order_id)
    offer = Offer.objects.select_for_update().get(pk=offer_id)
    return order, offer


def offer_accept(*, offer_id, rider: Rider) -> Offer:
    """The rider takes the order: exactly one of any number of concurrent accepts succeeds.

    Locks the Order row first, then the Offer, then (in order_transition) the Rider. Under the
    order lock only a pending, unexpired offer of an order still searching_rider wins; every
    later caller finds the offer or the order moved on and gets offer_not_available (409). The
    winner's order is assigned through order_transition, which puts the rider on the delivery
    and withdraws the order's other pending offers (their riders told after commit).
    """
    with transaction.atomic():
        order, offer = _lock_offer_and_order(offer_id=offer_id, rider=rider)
        now = timezone.now()
        if (
            offer.status != Offer.Status.PENDING
            or offer.expires_at <= now
            or order.status != OrderStatus.SEARCHING_RIDER
        ):
            raise ApiError(DeliveryError.OFFER_NOT_AVAILABLE)
        offer.status = Offer.Status.ACCEPTED
        offer.responded_at = now
        offer.save(update_fields=["status", "responded_at", "updated_at"])
        searched = (now - _searching_since(order)).total_seconds()
        try:
            order = order_transition(
                order_id=order.pk, action=Action.ASSIGN, actor=Actor.rider(rider.user), rider=rider
            )
        except ApiError as refusal:
            if refusal.kind is not RiderError.UNAVAILABLE:
                raise
            raise ApiError(
                DeliveryError.OFFER_NOT_AVAILABLE,
                "Only an online, approved rider without a delivery can accept.",
            ) from None
    ACCEPT_SECONDS.observe(searched)
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
            raise ApiError(DeliveryError.OFFER_NOT_AVAILABLE)
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
            count = Offer.objects.filter(
                order=order, status=Offer.Status.PENDING, expires_at__lte=now
            ).update(status=Offer.Status.EXPIRED, updated_at=now)
            OFFERS_EXPIRED.inc_on_commit(count)
            expired += count
            _next_round_when_unanswered(order)
    if expired:
        logger.info("expired %d offer(s)", expired)
    return expired


def dispatch_sweep() -> int:
    """The periodic safety net: expire stale offers, withdraw offers held by riders no longer
    available, re-dispatch orders left waiting. Returns how many orders were handed to dispatch.
    """
    from delivery.selectors import orders_waiting_for_dispatch

    offers_expire()
    offers_withdraw_from_unavailable_riders()
    waiting = orders_waiting_for_dispatch()
    for order_id in waiting:
        dispatch_request(order_id=order_id)
    return len(waiting)


def dispatch_rematch_request(*, rider_id) -> None:
    """After commit, when a rider comes online: queues delivery.tasks.rematch_rider (high).

    Not run in the rider's request: the search and the rounds it queues took most of the
    "online" call's time under load (py-spy in the city soak: 57 % of its samples), and the
    answer does not depend on them. Best effort, as dispatch_request: if the broker is down,
    the sweep offers the waiting orders and the rider's next fix brings them within reach.
    """
    from delivery.tasks import rematch_rider

    queue_task(rematch_rider, str(rider_id), recovered_by="the dispatch sweep")


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


# --- Offers following the order and the rider ----------------------------------------------------


def dispatch_request(*, order_id) -> None:
    """The entry point of dispatch: called after commit when an order reaches searching_rider.

    Queues delivery.tasks.dispatch_order on the high queue, which runs one dispatch round
    (delivery.services.dispatch_round); declines, expiry and the sweep queue the later rounds.

    Best effort: it runs after the change is committed, so a broker (Redis) that is down must
    not turn that change into an error (a 500 for an order that was in fact booked). The order
    is left searching with no round, which is what the sweep (delivery.tasks.sweep_stale_offers,
    every 10 s) looks for once the broker is back.
    """
    from delivery.tasks import dispatch_order

    queue_task(dispatch_order, str(order_id), recovered_by="the dispatch sweep")


def dispatch_when_searching(move) -> None:
    """orders.state hook, after commit: an order that (again) searches a rider gets a round."""
    if move.to_status == OrderStatus.SEARCHING_RIDER:
        dispatch_request(order_id=move.order.pk)


def offers_follow_transition(move) -> None:
    """orders.state hook, inside the order's lock, for every move.

    An order that stops searching withdraws its pending offers (taken by a rider, assigned by
    ops, or closed); a released order marks its accepted offer released, so the rider who wins
    it next can accept (offer_one_accepted_per_order allows one accepted offer per order).
    """
    order, from_status, to_status, action = (
        move.order,
        move.from_status,
        move.to_status,
        move.action,
    )
    if action == Action.RELEASE:
        Offer.objects.filter(order=order, status=Offer.Status.ACCEPTED).update(
            status=Offer.Status.RELEASED, updated_at=timezone.now()
        )
    if from_status != OrderStatus.SEARCHING_RIDER or to_status == OrderStatus.SEARCHING_RIDER:
        return
    if action == Action.ASSIGN:
        reason = Offer.Reason.TAKEN if move.actor.kind == "rider" else Offer.Reason.ASSIGNED_BY_OPS
    else:
        reason = Offer.Reason.ORDER_CLOSED
    _withdraw_locked(order=order, offers=Offer.objects.filter(order=order), reason=reason)


def _withdraw_locked(*, order: Order, offers, reason: str) -> int:
    """Withdraws the pending ones among `offers` of `order`, whose lock the caller holds."""
    pending = list(
        offers.filter(status=Offer.Status.PENDING).select_for_update().values_list("pk", "rider_id")
    )
    if not pending:
        return 0
    Offer.objects.filter(pk__in=[offer_id for offer_id, _ in pending]).update(
        status=Offer.Status.WITHDRAWN, withdrawn_reason=reason, updated_at=timezone.now()
    )
    realtime.send_many_on_commit(
        (realtime.rider_group(rider_id), _withdrawn_message(offer_id, order.pk, reason))
        for offer_id, rider_id in pending
    )
    return len(pending)


def offers_withdraw_from_unavailable_riders(*, rider_id=None) -> int:
    """Withdraws pending offers held by riders no longer online and approved (one rider's, or
    everyone's); their orders go to the next round at once. Returns how many.

    Called after a rider goes offline, is suspended or loses approval, and by the sweep as a
    safety net. Each order is settled in its own transaction under its lock (Order, then
    Offers), so an accept racing the withdrawal either wins first or finds the offer gone.
    """
    unavailable = Offer.objects.filter(status=Offer.Status.PENDING).exclude(
        rider__status=Rider.Status.ONLINE, rider__approved=True
    )
    if rider_id is not None:
        unavailable = unavailable.filter(rider_id=rider_id)
    withdrawn = 0
    for order_id in set(unavailable.values_list("order_id", flat=True)):
        with transaction.atomic():
            order = Order.objects.select_for_update().get(pk=order_id)
            withdrawn += _withdraw_locked(
                order=order,
                offers=unavailable.filter(order=order),
                reason=Offer.Reason.RIDER_UNAVAILABLE,
            )
            _next_round_when_unanswered(order)
    if withdrawn:
        logger.info("withdrew %d offer(s) from riders no longer available", withdrawn)
    return withdrawn
