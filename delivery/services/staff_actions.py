"""What ops staff do by hand: give an order to a rider, take it back, let a locked rider
try the delivery code again.
"""

import logging

from django.conf import settings
from django.contrib.gis.db.models.functions import Distance
from django.db import transaction
from django.utils import timezone

from core.exceptions import ApiError, CommonError
from delivery.models import Offer
from delivery.services.dispatch import _send_to_rider
from orders.errors import OrderError
from orders.models import Order
from orders.selectors import cash_to_collect_paise, place
from orders.state import Action, Actor, order_transition
from riders.models import Rider

logger = logging.getLogger(__name__)


def _require_assign_permission(staff) -> None:
    if not (staff.is_staff and staff.has_perm("orders.assign_rider")):
        raise ApiError(CommonError.PERMISSION_DENIED, "You need the assign-rider permission.")


def order_assign_by_staff(*, order_id, rider_id, staff, reason: str = "") -> Order:
    """Ops give a searching order to a chosen rider, who must be online, approved and free.

    The same move as a rider accepting (order_transition ASSIGN): pending offers are withdrawn,
    the rider goes on the delivery and, after commit, hears of it on their socket
    ({"type": "assigned", ...}, the offer frame's trip and pay). The offer log gets an accepted
    offer of round 0 for it.
    """
    _require_assign_permission(staff)
    rider = Rider.objects.filter(pk=rider_id).first()
    if rider is None:
        raise ApiError(CommonError.INVALID, fields={"rider": ["No such rider."]})
    with transaction.atomic():
        order = order_transition(
            order_id=order_id,
            action=Action.ASSIGN,
            actor=Actor.staff(staff),
            rider=rider,
            reason=reason or f"Assigned by hand by {staff.phone}",
        )
        order = Order.objects.select_related("quote").get(pk=order.pk)
        # The offer log records manual assignments too (round 0), accepted at once: the rider
        # is then never offered this order again, as after a release of an accepted offer.
        now = timezone.now()
        Offer.objects.create(
            order=order,
            rider=rider,
            round_number=0,
            distance_m=_metres_to_pickup(rider, order),
            pay_paise=settings.RIDER_FIXED_PAY_PER_ORDER_PAISE,
            status=Offer.Status.ACCEPTED,
            expires_at=now,
            responded_at=now,
        )
        message = {
            "type": "assigned",
            "order_id": str(order.pk),
            "pickup": place(order.quote.pickup_location, order.quote.pickup_address),
            "drop": place(order.quote.drop_location, order.quote.drop_address),
            "pay_paise": settings.RIDER_FIXED_PAY_PER_ORDER_PAISE,
            "cash_to_collect_paise": cash_to_collect_paise(order),
        }
        transaction.on_commit(lambda: _send_to_rider(rider.pk, message))
    logger.info("order %s assigned by hand to rider %s by %s", order.pk, rider.pk, staff.pk)
    return order


def _metres_to_pickup(rider: Rider, order: Order) -> int:
    distance = (
        Rider.objects.filter(pk=rider.pk)
        .annotate(metres=Distance("last_location", order.quote.pickup_location))
        .values_list("metres", flat=True)
        .first()
    )
    return round(distance.m) if distance is not None else 0


def order_unassign_by_staff(*, order_id, staff, reason: str = "") -> Order:
    """Ops take an assigned order back from its rider (before the pickup); it searches again.

    The rider is free again and hears of it on their socket ({"type": "unassigned", ...},
    sent by order_transition).
    """
    _require_assign_permission(staff)
    order = order_transition(
        order_id=order_id,
        action=Action.RELEASE,
        actor=Actor.staff(staff),
        reason=reason or f"Unassigned by hand by {staff.phone}",
    )
    logger.info("order %s unassigned by %s", order.pk, staff.pk)
    return order


def delivery_code_attempts_reset(*, order_id, staff) -> None:
    """Ops checked a locked delivery (called the customer) and let the rider try again."""
    _require_assign_permission(staff)
    reset = Order.objects.filter(pk=order_id).update(
        delivery_code_attempts=0, updated_at=timezone.now()
    )
    if not reset:
        raise ApiError(OrderError.NOT_FOUND)
    logger.info("order %s: delivery-code tries reset by staff %s", order_id, staff.pk)
