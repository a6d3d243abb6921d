"""Every (state, action, actor kind) triple of the order state machine, against the design.

EXPECTED is written out by hand from the design (ARCHITECTURE.md and the orders issue), not
derived from orders.state.TRANSITIONS, so a wrong entry in the code fails here.
"""

import itertools

import pytest

from accounts.tests.factories import UserFactory
from core.exceptions import ApiError
from orders.errors import OrderError
from orders.models import CARRYING_STATUSES, TERMINAL_STATUSES, ActorKind, OrderEvent, OrderStatus
from orders.state import Action, Actor, order_transition
from orders.tests.factories import OrderFactory, RiderFactory
from riders.models import Rider

pytestmark = pytest.mark.django_db

CUSTOMER, RIDER, STAFF, SYSTEM = "customer", "rider", "staff", "system"

# (from status, action): (to status, actor kinds allowed)
EXPECTED = {
    ("created", "request_payment"): ("payment_pending", {SYSTEM}),
    ("created", "confirm_cash"): ("searching_rider", {SYSTEM}),
    ("payment_pending", "mark_paid"): ("searching_rider", {SYSTEM}),
    ("searching_rider", "assign"): ("rider_assigned", {RIDER, STAFF, SYSTEM}),
    ("rider_assigned", "release"): ("searching_rider", {RIDER, STAFF, SYSTEM}),
    ("rider_assigned", "arrive_pickup"): ("at_pickup", {RIDER}),
    ("at_pickup", "pick_up"): ("picked_up", {RIDER}),
    ("picked_up", "arrive_drop"): ("at_dropoff", {RIDER}),
    ("at_dropoff", "deliver"): ("delivered", {RIDER}),
    ("rider_assigned", "fail"): ("failed", {RIDER, STAFF}),
    ("at_pickup", "fail"): ("failed", {RIDER, STAFF}),
    ("picked_up", "fail"): ("failed", {RIDER, STAFF}),
    ("at_dropoff", "fail"): ("failed", {RIDER, STAFF}),
    # customers: free cancellation until pickup, including after a rider is assigned
    ("created", "cancel"): ("cancelled", {CUSTOMER, STAFF, SYSTEM}),
    ("payment_pending", "cancel"): ("cancelled", {CUSTOMER, STAFF, SYSTEM}),
    ("searching_rider", "cancel"): ("cancelled", {CUSTOMER, STAFF, SYSTEM}),
    ("rider_assigned", "cancel"): ("cancelled", {CUSTOMER, STAFF, SYSTEM}),
    ("at_pickup", "cancel"): ("cancelled", {CUSTOMER, STAFF, SYSTEM}),
    ("picked_up", "cancel"): ("cancelled", {STAFF, SYSTEM}),
    ("at_dropoff", "cancel"): ("cancelled", {STAFF, SYSTEM}),
}

TRIPLES = list(itertools.product(OrderStatus.values, Action.values, ActorKind.values))


def test_the_table_covers_every_status_action_and_actor():
    assert len(TRIPLES) == 10 * 11 * 4
    # Terminal states have no way out.
    assert not [key for key in EXPECTED if key[0] in TERMINAL_STATUSES]


def _actor(kind: str, order) -> Actor:
    """The rightful actor of each kind: the order's customer, its rider, a staff member."""
    if kind == CUSTOMER:
        return Actor.customer(order.customer)
    if kind == RIDER:
        rider = order.rider or RiderFactory()  # assigning: a rider accepting the offer
        return Actor.rider(rider.user)
    if kind == STAFF:
        return Actor.staff(UserFactory(is_staff=True))
    return Actor.system()


@pytest.mark.parametrize(("status", "action", "kind"), TRIPLES)
def test_each_triple_moves_and_records_or_is_refused_and_changes_nothing(status, action, kind):
    # given an order in `status`
    order = OrderFactory(status=status)
    carrier_id = order.rider_id
    actor = _actor(kind, order)
    staff_rider = RiderFactory() if (action == "assign" and kind in {STAFF, SYSTEM}) else None
    expected = EXPECTED.get((status, action))

    if expected is not None and kind in expected[1]:
        # when
        moved = order_transition(
            order_id=order.pk, action=action, actor=actor, reason="test", rider=staff_rider
        )
        # then
        assert moved.status == expected[0]
        order.refresh_from_db()
        assert order.status == expected[0]
        event = OrderEvent.objects.get(order=order)
        assert (event.from_status, event.to_status, event.action) == (status, expected[0], action)
        assert (event.actor_kind, event.actor, event.reason) == (kind, actor.user, "test")
        assert order.tracking_seq == 1
        if expected[0] == "rider_assigned":
            assert order.rider.status == Rider.Status.ON_DELIVERY
        if expected[0] == "searching_rider" and status == "rider_assigned":
            assert order.rider is None
        if status in CARRYING_STATUSES and expected[0] not in CARRYING_STATUSES:
            carrier = Rider.objects.get(pk=carrier_id)
            assert carrier.status == Rider.Status.ONLINE  # free for the next order
    else:
        # when / then
        with pytest.raises(ApiError) as refused:
            order_transition(order_id=order.pk, action=action, actor=actor, rider=staff_rider)
        assert refused.value.kind is OrderError.INVALID_TRANSITION
        order.refresh_from_db()
        assert order.status == status
        assert not OrderEvent.objects.filter(order=order).exists()


def test_a_rider_acts_only_on_the_order_assigned_to_them():
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    other_rider = RiderFactory()

    with pytest.raises(ApiError) as refused:
        order_transition(
            order_id=order.pk, action="arrive_pickup", actor=Actor.rider(other_rider.user)
        )
    assert refused.value.kind is OrderError.NOT_PARTY
    assert not OrderEvent.objects.exists()


def test_a_customer_cancels_only_their_own_order():
    order = OrderFactory(status=OrderStatus.SEARCHING_RIDER)

    with pytest.raises(ApiError) as refused:
        order_transition(order_id=order.pk, action="cancel", actor=Actor.customer(UserFactory()))
    assert refused.value.kind is OrderError.NOT_PARTY
    order.refresh_from_db()
    assert order.status == OrderStatus.SEARCHING_RIDER


def test_reaching_searching_rider_hands_the_order_to_dispatch_after_commit(
    dispatched, django_capture_on_commit_callbacks
):
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        order_transition(order_id=order.pk, action="release", actor=Actor.system())
    assert dispatched == []  # nothing before commit
    for callback in callbacks:
        callback()

    assert dispatched == [str(order.pk)]
