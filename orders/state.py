"""The order status machine: every allowed move as data, and the one function that moves orders.

Nothing else writes `Order.status`. Each move locks the order, checks the source state and the
kind of actor against TRANSITIONS, writes an OrderEvent, runs the hooks other apps registered
(inside the lock, then after commit) and tells the order's sockets. It imports no other app:
riders, delivery and the rest register their hooks in their AppConfig.ready().
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import models, transaction

from accounts.models import User
from core import locks, realtime
from core.exceptions import ApiError
from core.metrics import ORDER_TRANSITIONS
from orders.errors import OrderError
from orders.models import (
    CARRYING_STATUSES,
    TERMINAL_STATUSES,
    ActorKind,
    Order,
    OrderEvent,
    OrderStatus,
)


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


# Who may ask for a move, by kind of actor.
SYSTEM = frozenset({ActorKind.SYSTEM})
THE_RIDER = frozenset({ActorKind.RIDER})
RIDER_OR_STAFF = frozenset({ActorKind.RIDER, ActorKind.STAFF})
RIDER_OR_OPS = frozenset({ActorKind.RIDER, ActorKind.STAFF, ActorKind.SYSTEM})
CUSTOMER_OR_OPS = frozenset({ActorKind.CUSTOMER, ActorKind.STAFF, ActorKind.SYSTEM})
OPS = frozenset({ActorKind.STAFF, ActorKind.SYSTEM})  # staff, or the system on their rules

BEFORE_PICKUP = [
    OrderStatus.CREATED,
    OrderStatus.PAYMENT_PENDING,
    OrderStatus.SEARCHING_RIDER,
    OrderStatus.RIDER_ASSIGNED,
    OrderStatus.AT_PICKUP,
]

# (from status, action) -> (to status, who may ask). A pair missing here is refused.
TRANSITIONS: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    (OrderStatus.CREATED, Action.REQUEST_PAYMENT): (OrderStatus.PAYMENT_PENDING, SYSTEM),
    (OrderStatus.CREATED, Action.CONFIRM_CASH): (OrderStatus.SEARCHING_RIDER, SYSTEM),
    (OrderStatus.PAYMENT_PENDING, Action.MARK_PAID): (OrderStatus.SEARCHING_RIDER, SYSTEM),
    # A rider accepting an offer, or ops assigning by hand.
    (OrderStatus.SEARCHING_RIDER, Action.ASSIGN): (OrderStatus.RIDER_ASSIGNED, RIDER_OR_OPS),
    # The rider gives the order back before reaching the pickup; dispatch searches again.
    (OrderStatus.RIDER_ASSIGNED, Action.RELEASE): (OrderStatus.SEARCHING_RIDER, RIDER_OR_OPS),
    (OrderStatus.RIDER_ASSIGNED, Action.ARRIVE_PICKUP): (OrderStatus.AT_PICKUP, THE_RIDER),
    (OrderStatus.AT_PICKUP, Action.PICK_UP): (OrderStatus.PICKED_UP, THE_RIDER),
    (OrderStatus.PICKED_UP, Action.ARRIVE_DROP): (OrderStatus.AT_DROPOFF, THE_RIDER),
    (OrderStatus.AT_DROPOFF, Action.DELIVER): (OrderStatus.DELIVERED, THE_RIDER),
    **{(source, Action.FAIL): (OrderStatus.FAILED, RIDER_OR_STAFF) for source in CARRYING_STATUSES},
    # Customers may cancel until the package is picked up; once the rider is at the pickup the
    # order is marked `cancelled_late` (for a fee; none is charged yet). Once the package is
    # with the rider only ops (or the system) can cancel.
    **{
        (source, Action.CANCEL): (OrderStatus.CANCELLED, CUSTOMER_OR_OPS)
        for source in BEFORE_PICKUP
    },
    (OrderStatus.PICKED_UP, Action.CANCEL): (OrderStatus.CANCELLED, OPS),
    (OrderStatus.AT_DROPOFF, Action.CANCEL): (OrderStatus.CANCELLED, OPS),
}


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
        raise ApiError(OrderError.NOT_PARTY, "Only the system acts without a user.")
    if actor.kind == ActorKind.CUSTOMER and order.customer_id != actor.user.pk:
        raise ApiError(OrderError.NOT_PARTY)
    if actor.kind == ActorKind.RIDER:
        rider = getattr(actor.user, "rider", None)
        if rider is None:
            raise ApiError(OrderError.NOT_PARTY, "Only riders act as riders.")
        if action != Action.ASSIGN and order.rider_id != rider.pk:
            raise ApiError(OrderError.NOT_PARTY, "Only the assigned rider can do that.")
    if actor.kind == ActorKind.STAFF and not actor.user.is_staff:
        raise ApiError(OrderError.NOT_PARTY, "Only staff act as staff.")


# --- Hooks: what the other apps do when an order moves ---------------------------------------


@dataclass
class Transition:
    """One move, as the hooks see it."""

    order: Order  # locked, already saved with its new status
    action: str
    actor: Actor
    from_status: str
    to_status: str
    from_rider_id: object  # the rider the order had before the move, or None
    # (group, message) pairs sent after commit with the status messages, in one trip
    messages: list = field(default_factory=list)


_before_lock_hooks: list[tuple[int, Callable[[object, str], None]]] = []
_locked_hooks: list[tuple[int, Callable[[Transition], None]]] = []
_committed_hooks: list[Callable[[Transition], None]] = []


def on_transition_locking(hook: Callable[[object, str], None], *, locks_rows: str) -> None:
    """`hook(order_id, action)` runs before every move takes the order's lock, in the same
    transaction: for rows that come before the order in the lock order (core.locks), which a
    hook inside the lock then works on (payments: a cancel refunds the captures it locked)."""
    position = locks.position(locks_rows)
    if position >= locks.position("order"):
        raise ValueError(f"{locks_rows} rows are locked after the order: on_transition_locked")
    _before_lock_hooks.append((position, hook))
    _before_lock_hooks.sort(key=lambda entry: entry[0])


def on_transition_locked(hook: Callable[[Transition], None], *, locks_rows: str | None) -> None:
    """`hook(transition)` runs inside the order's lock after every move, among the others in
    the lock order (core.locks) of the rows it locks, `locks_rows` (None: it locks none, and
    runs first)."""
    position = -1 if locks_rows is None else locks.position(locks_rows)
    if 0 <= position <= locks.position("order"):
        raise ValueError(f"{locks_rows} rows are locked before the order: on_transition_locking")
    _locked_hooks.append((position, hook))
    _locked_hooks.sort(key=lambda entry: entry[0])


def on_transition_committed(hook: Callable[[Transition], None]) -> None:
    """`hook(transition)` runs after the move is committed, after its messages are queued."""
    _committed_hooks.append(hook)


def order_transition(
    *, order_id, action: str, actor: Actor, reason: str = "", rider=None, if_status=None
) -> Order:
    """Moves one order along TRANSITIONS and records it; the only writer of Order.status.

    Locks the order row (select_for_update) for the rest of the caller's transaction, in the
    lock order of core.locks (a caller that also locks payments takes them first). `rider` is
    the rider an ASSIGN gives the order (a rider accepting assigns themself). `if_status`: the
    move is made only from that status (OrderError.INVALID_TRANSITION otherwise), for a caller
    that decided on an earlier read.

    Besides the status, a move bumps the order's tracking seq. The hooks run before the order's
    lock (payments: lock a cancelled order's payments), inside it (payments: refund a paid
    order that is cancelled; delivery: the order's offers; riders: take the rider an ASSIGN
    gives the order, online and free or refused, and free a rider the order leaves), and after
    commit, once the order's sockets are told the new status (delivery: dispatch for an order
    that searches again).
    """
    with transaction.atomic():
        for _, hook in _before_lock_hooks:
            hook(order_id, action)
        order = Order.objects.select_for_update().get(pk=order_id)
        if if_status is not None and order.status != if_status:
            raise ApiError(
                OrderError.INVALID_TRANSITION, f"The order is no longer {if_status}; left as it is."
            )
        rule = TRANSITIONS.get((order.status, action))
        if rule is None:
            raise ApiError(
                OrderError.INVALID_TRANSITION,
                f"An order that is {order.get_status_display().lower()} cannot do {action}.",
            )
        to_status, actor_kinds = rule
        if actor.kind not in actor_kinds:
            raise ApiError(
                OrderError.INVALID_TRANSITION,
                f"A {actor.kind} cannot {action} an order that is "
                f"{order.get_status_display().lower()}.",
            )
        _check_party(order, action, actor)

        from_status, from_rider_id = order.status, order.rider_id
        order.status = to_status
        order.tracking_seq += 1
        fields = ["status", "tracking_seq", "updated_at"]
        if action == Action.ASSIGN:
            rider = rider if rider is not None else getattr(actor.user, "rider", None)
            if rider is None:
                raise ApiError(OrderError.INVALID_TRANSITION, "Assigning needs a rider.")
            # Self-dealing: a phone that books as a customer and rides as a rider would be
            # paid for carrying its own order (and read its own delivery code).
            if rider.user_id == order.customer_id:
                raise ApiError(OrderError.RIDER_IS_CUSTOMER)
            # Taken (locked, checked and put on the delivery) by riders' hook below, in the
            # lock order: after the order's offers.
            order.rider = rider
            fields.append("rider")
        elif action == Action.RELEASE:
            order.rider = None
            fields.append("rider")
        elif (
            action == Action.CANCEL
            and from_status == OrderStatus.AT_PICKUP
            and actor.kind == ActorKind.CUSTOMER
        ):
            order.cancelled_late = True  # the rider came for nothing
            fields.append("cancelled_late")
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
        move = Transition(
            order=order,
            action=action,
            actor=actor,
            from_status=from_status,
            to_status=to_status,
            from_rider_id=from_rider_id,
        )
        for _, hook in _locked_hooks:
            hook(move)
        ORDER_TRANSITIONS.inc_on_commit(value=str(to_status))
        status = realtime.status_message(
            order_id=order.pk,
            seq=order.tracking_seq,
            status=to_status,
            rider_id=order.rider_id,
            at=order.updated_at,
        )
        move.messages.append((realtime.order_group(order.pk), status))
        move.messages.append((realtime.OPS_GROUP, realtime.ops_order_status_message(order)))
        realtime.send_many_on_commit(move.messages)  # one trip to the event loop
        for hook in _committed_hooks:  # after the messages: a new offer comes after them
            transaction.on_commit(lambda hook=hook: hook(move))
    return order
