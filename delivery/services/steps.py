"""The delivery steps, only by the order's rider: arrived, picked up, delivered (with the
customer's code) or failed.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.gis.db.models.functions import Distance
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from core.exceptions import ApiError
from delivery.errors import DeliveryError
from orders.errors import OrderError
from orders.models import ActorKind, Order, OrderStatus
from orders.selectors import cash_to_collect_paise
from orders.state import Action, Actor, order_transition, transition_allowed
from riders.models import Earning, Rider

logger = logging.getLogger(__name__)


def _rider_order(*, order_id, rider: Rider) -> Order:
    """The order if it is assigned to this rider; 404 otherwise (other orders are not theirs
    to know about)."""
    order = Order.objects.select_related("quote").filter(pk=order_id, rider=rider).first()
    if order is None:
        raise ApiError(OrderError.NOT_FOUND)
    return order


def _require_near(*, rider: Rider, point, place_name: str) -> None:
    """The rider's last fresh position must lie within DELIVERY_GEOFENCE_M of point."""
    fresh_since = timezone.now() - timedelta(seconds=settings.RIDER_LOCATION_MAX_AGE_SECONDS)
    seen = (
        Rider.objects.filter(pk=rider.pk, last_location_at__gte=fresh_since)
        .annotate(distance=Distance("last_location", point))
        .values_list("distance", flat=True)
        .first()
    )
    if seen is None:
        raise ApiError(DeliveryError.LOCATION_REQUIRED)
    if seen.m > settings.DELIVERY_GEOFENCE_M:
        raise ApiError(
            DeliveryError.OUTSIDE_GEOFENCE,
            f"You are {round(seen.m)} m from the {place_name}; come within "
            f"{settings.DELIVERY_GEOFENCE_M} m and try again.",
        )


def _arrive(*, order_id, rider: Rider, action: str, place_name: str) -> Order:
    """An arrival: the geofence is checked only for a move the order's state allows, so an
    arrival out of order is an invalid_transition wherever the rider stands."""
    order = _rider_order(order_id=order_id, rider=rider)
    if transition_allowed(from_status=order.status, action=action, actor_kind=ActorKind.RIDER):
        quote = order.quote
        point = quote.pickup_location if place_name == "pickup" else quote.drop_location
        _require_near(rider=rider, point=point, place_name=place_name)
    return order_transition(order_id=order.pk, action=action, actor=Actor.rider(rider.user))


def delivery_arrive_pickup(*, order_id, rider: Rider) -> Order:
    return _arrive(order_id=order_id, rider=rider, action=Action.ARRIVE_PICKUP, place_name="pickup")


def delivery_arrive_drop(*, order_id, rider: Rider) -> Order:
    return _arrive(order_id=order_id, rider=rider, action=Action.ARRIVE_DROP, place_name="drop")


def delivery_pick_up(*, order_id, rider: Rider) -> Order:
    order = _rider_order(order_id=order_id, rider=rider)
    return order_transition(order_id=order.pk, action=Action.PICK_UP, actor=Actor.rider(rider.user))


def delivery_fail(*, order_id, rider: Rider, reason: str) -> Order:
    """The rider cannot complete the delivery (customer away, address wrong...): the order
    fails with the rider's reason and the rider is free again. Money is left to ops."""
    order = _rider_order(order_id=order_id, rider=rider)
    return order_transition(
        order_id=order.pk, action=Action.FAIL, actor=Actor.rider(rider.user), reason=reason
    )


def delivery_complete(*, order_id, rider: Rider, delivery_code: str) -> Order:
    """Delivered, with the code the customer reads out: the rider is credited exactly once.

    Locks the Order row. A wrong code counts against DELIVERY_CODE_MAX_ATTEMPTS (the count is
    committed even though the request is refused); after that the order is locked for ops.
    The Earning's unique order is the database's guarantee of one credit per delivery.
    """
    from orders.services import delivery_code_hmac

    _rider_order(order_id=order_id, rider=rider)
    tries_left = None
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status != OrderStatus.AT_DROPOFF:
            raise ApiError(
                OrderError.INVALID_TRANSITION,
                f"An order that is {order.get_status_display().lower()} cannot be delivered; "
                "mark arrival at the drop first.",
            )
        if order.delivery_code_attempts >= settings.DELIVERY_CODE_MAX_ATTEMPTS:
            raise ApiError(DeliveryError.CODE_LOCKED)
        expected = order.delivery_code_hmac
        if constant_time_compare(
            delivery_code_hmac(order_id=order.pk, code=delivery_code), expected
        ):
            order = order_transition(
                order_id=order.pk, action=Action.DELIVER, actor=Actor.rider(rider.user)
            )
            Earning.objects.create(
                rider_id=rider.pk,
                order=order,
                amount_paise=settings.RIDER_FIXED_PAY_PER_ORDER_PAISE,
                cash_collected_paise=cash_to_collect_paise(order),
            )
        else:
            order.delivery_code_attempts += 1
            order.save(update_fields=["delivery_code_attempts", "updated_at"])
            tries_left = settings.DELIVERY_CODE_MAX_ATTEMPTS - order.delivery_code_attempts
    if tries_left is not None:  # raised after commit, so the wrong try is counted
        logger.info("order %s: wrong delivery code, %d tries left", order_id, tries_left)
        if tries_left == 0:
            raise ApiError(DeliveryError.CODE_LOCKED)
        raise ApiError(
            DeliveryError.CODE_INVALID,
            fields={"delivery_code": [f"Wrong code; {tries_left} tries left."]},
        )
    logger.info("order %s delivered by rider %s", order.pk, rider.pk)
    return order
