"""The order status machine: every allowed move as data, and the one function that moves orders.

Nothing else writes `Order.status`. Each move locks the order, checks the source state and the
kind of actor against TRANSITIONS, writes an OrderEvent and queues its side effects to run
after commit. The dispatch issue drives the rider-side actions through the same function.
"""

from dataclasses import dataclass

from django.db import models, transaction
from rest_framework import status

from accounts.models import User
from core.exceptions import ApiError
from orders.models import CARRYING_STATUSES, TERMINAL_STATUSES, ActorKind, Order, OrderEvent
from orders.models import OrderStatus as S


class Action(models.TextChoices):
    REQUEST_PAYMENT = "request_payment", "Wait for online payment"
    CONFIRM_CASH = "confirm_cash", "Confirm cash on delivery"
    MARK_PAID = "mark_paid", "Payment captured"
    ASSIGN = "assign", "Assign a rider"
    RELEASE = "release", "Release the rider"
    ARRIVE_PICKUP = "arrive_pickup", "Rider arrived at pickup"
    PICK_UP = "pick_up", "Package picked up"
    ARRIVE_DROP = "arrive_drop", "Rider arrived at drop"
    DELIVER = "deliver", "Delivered"
    FAIL = "fail", "Delivery failed"
    CANCEL = "cancel", "Cancel"


C, R, T, Y = ActorKind.CUSTOMER, ActorKind.RIDER, ActorKind.STAFF, ActorKind.SYSTEM
_BEFORE_PICKUP = [S.CREATED, S.PAYMENT_PENDING, S.SEARCHING_RIDER, S.RIDER_ASSIGNED, S.AT_PICKUP]
_WITH_RIDER = CARRYING_STATUSES

# (from status, action) -> (to status, actor kinds allowed). A pair missing here is refused.
TRANSITIONS: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    (S.CREATED, Action.REQUEST_PAYMENT): (S.PAYMENT_PENDING, frozenset({Y})),
    (S.CREATED, Action.CONFIRM_CASH): (S.SEARCHING_RIDER, frozenset({Y})),
    (S.PAYMENT_PENDING, Action.MARK_PAID): (S.SEARCHING_RIDER, frozenset({Y})),
    # A rider accepting an offer, or ops assigning by hand.
    (S.SEARCHING_RIDER, Action.ASSIGN): (S.RIDER_ASSIGNED, frozenset({R, T, Y})),
    # The rider gives the order back before reaching the pickup; dispatch searches again.
    (S.RIDER_ASSIGNED, Action.RELEASE): (S.SEARCHING_RIDER, frozenset({R, T, Y})),
    (S.RIDER_ASSIGNED, Action.ARRIVE_PICKUP): (S.AT_PICKUP, frozenset({R})),
    (S.AT_PICKUP, Action.PICK_UP): (S.PICKED_UP, frozenset({R})),
    (S.PICKED_UP, Action.ARRIVE_DROP): (S.AT_DROPOFF, frozenset({R})),
    (S.AT_DROPOFF, Action.DELIVER): (S.DELIVERED, frozenset({R})),
    **{(source, Action.FAIL): (S.FAILED, frozenset({R, T})) for source in _WITH_RIDER},
    # Customers may cancel until the package is picked up; there are no cancellation fees yet,
    # so cancelling after a rider is assigned is free too (the reason is recorded). Once the
    # package is with the rider only ops (or the system) can cancel.
    **{(source, Action.CANCEL): (S.CANCELLED, frozenset({C, T, Y})) for source in _BEFORE_PICKUP},
    (S.PICKED_UP, Action.CANCEL): (S.CANCELLED, frozenset({T, Y})),
    (S.AT_DROPOFF, Action.CANCEL): (S.CANCELLED, frozenset({T, Y})),
}


class InvalidTransition(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "invalid_transition"
    message = "The order cannot make that change in its current state."


class RiderIsCustomer(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "rider_is_customer"
    message = "A rider cannot carry their own order."


class NotOrderParty(ApiError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"
    message = "You are not a party to this order."


@dataclass(frozen=True)
class Actor:
    """Who asks for a move: a kind from ActorKind and, except for the system, the user."""

    kind: str
    user: User | None = None

    @classmethod
    def system(cls) -> "Actor":
        return cls(ActorKind.SYSTEM)

    @classmethod
    def customer(cls, user: User) -> "Actor":
        return cls(ActorKind.CUSTOMER, user)

    @classmethod
    def rider(cls, user: User) -> "Actor":
        return cls(ActorKind.RIDER, user)

    @classmethod
    def staff(cls, user: User) -> "Actor":
        return cls(ActorKind.STAFF, user)


def transition_allowed(*, from_status: str, action: str, actor_kind: str) -> bool:
    rule = TRANSITIONS.get((from_status, action))
    return rule is not None and actor_kind in rule[1]


def _check_party(order: Order, action: str, actor: Actor) -> None:
    """Kind alone is not enough: a customer must own the order, a rider must be its rider."""
    if actor.kind == ActorKind.SYSTEM:
        return
    if actor.user is None:
        raise NotOrderParty("Only the system acts without a user.")
    if actor.kind == ActorKind.CUSTOMER and order.customer_id != actor.user.pk:
        raise NotOrderParty()
    if actor.kind == ActorKind.RIDER:
        rider = getattr(actor.user, "rider", None)
        if rider is None:
            raise NotOrderParty("Only riders act as riders.")
        if action != Action.ASSIGN and order.rider_id != rider.pk:
            raise NotOrderParty("Only the assigned rider can do that.")
    if actor.kind == ActorKind.STAFF and not actor.user.is_staff:
        raise NotOrderParty("Only staff act as staff.")


def order_transition(*, order_id, action: str, actor: Actor, reason: str = "", rider=None) -> Order:
    """Moves one order along TRANSITIONS and records it; the only writer of Order.status.

    Locks the order row (select_for_update) for the rest of the caller's transaction. Callers
    that also lock payments take them first: Payment rows, then the Order row (see
    payments.services). `rider` is the rider an ASSIGN gives the order (a rider accepting
    assigns themself).

    Besides the status, a move: bumps the order's tracking seq; on ASSIGN locks the rider (after
    the order) and puts them on the delivery, refusing one who is not online and free; frees
    the rider when the order leaves the rider's hands (released, delivered, failed, cancelled),
    telling their rider socket when someone else took it from them;
    withdraws the pending offers of an order that stops searching. After commit it starts
    dispatch for an order that (again) searches, and tells the order's sockets the new status.
    """
    from delivery import realtime
    from delivery.services import offers_follow_transition
    from orders.services import dispatch_request
    from riders.services import rider_finish_delivery, rider_take_delivery

    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        rule = TRANSITIONS.get((order.status, action))
        if rule is None:
            raise InvalidTransition(
                f"An order that is {order.get_status_display().lower()} cannot do {action}."
            )
        to_status, actor_kinds = rule
        if actor.kind not in actor_kinds:
            raise InvalidTransition(
                f"A {actor.kind} cannot {action} an order that is "
                f"{order.get_status_display().lower()}."
            )
        _check_party(order, action, actor)

        from_status, from_rider_id = order.status, order.rider_id
        order.status = to_status
        order.tracking_seq += 1
        fields = ["status", "tracking_seq", "updated_at"]
        if action == Action.ASSIGN:
            rider = rider if rider is not None else getattr(actor.user, "rider", None)
            if rider is None:
                raise InvalidTransition("Assigning needs a rider.")
            # Self-dealing: a phone that books as a customer and rides as a rider would be
            # paid for carrying its own order (and read its own delivery code).
            if rider.user_id == order.customer_id:
                raise RiderIsCustomer()
            # Locks the Rider row after the Order row, the project's lock order.
            order.rider = rider_take_delivery(rider_id=rider.pk)
            fields.append("rider")
        elif action == Action.RELEASE:
            order.rider = None
            fields.append("rider")
        if to_status in TERMINAL_STATUSES:
            # The plain code is only there for the customer to read out; it has no use now.
            order.delivery_code = ""
            fields.append("delivery_code")
        order.save(update_fields=fields)
        OrderEvent.objects.create(
            order=order,
            action=action,
            from_status=from_status,
            to_status=to_status,
            actor_kind=actor.kind,
            actor=actor.user,
            reason=reason[:500],
        )
        offers_follow_transition(
            order=order,
            from_status=from_status,
            to_status=to_status,
            action=action,
            actor_kind=actor.kind,
        )
        if from_rider_id is not None and to_status not in _WITH_RIDER:
            rider_finish_delivery(rider_id=from_rider_id)
            if actor.kind != ActorKind.RIDER:  # unassigned or cancelled under the rider
                realtime.send_on_commit(
                    realtime.rider_group(from_rider_id),
                    {"type": "unassigned", "order_id": str(order.pk), "status": to_status},
                )
        realtime.send_on_commit(
            realtime.order_group(order.pk),
            realtime.status_message(
                order_id=order.pk,
                seq=order.tracking_seq,
                status=to_status,
                rider_id=order.rider_id,
                at=order.updated_at,
            ),
        )
        realtime.send_on_commit(realtime.OPS_GROUP, realtime.ops_order_status_message(order))
        if to_status == S.SEARCHING_RIDER:  # after the messages: a new offer comes after them
            transaction.on_commit(lambda: dispatch_request(order_id=order.pk))
    return order
