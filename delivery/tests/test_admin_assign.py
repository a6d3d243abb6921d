"""Ops assign and unassign riders by hand in the admin: who may, which riders are offered, what
the POST changes, and what the rider's app hears.

Real admin requests with django's Client, signed in as a staff member whose rights come only
from an ops group. The socket tests are transactional (frames go out after commit); the rest
run in a rolled-back transaction.
"""

import re

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from config.asgi import application
from delivery.models import Offer
from delivery.services.dispatch import dispatch_round
from delivery.tests.communicator import WebsocketCommunicator
from delivery.tests.support import rider_near_pickup, searching_order
from orders.models import Order, OrderEvent, OrderStatus
from orders.tests.factories import DROP, PICKUP, OrderFactory
from orders.tests.support import ensure_ops_groups, ops_user
from riders.models import Rider
from riders.tests.factories import RiderFactory, access_token

HEADERS = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
ORDERS = "/admin/orders/order/"
RIDER_OPTION = re.compile(r'<option value="([0-9a-f-]{36})"')


def assign_url(order) -> str:
    return f"{ORDERS}{order.pk}/assign/"


def signed_in(*groups: str) -> Client:
    """A client signed in as a staff member whose rights come only from `groups`."""
    ensure_ops_groups()
    client = Client()
    client.force_login(ops_user(*groups))
    return client


def listed_riders(page) -> list:
    """The riders offered in the assign form, in the order shown."""
    return RIDER_OPTION.findall(page.content.decode())


def action(name: str, *orders) -> dict:
    return {"action": name, "_selected_action": [str(order.pk) for order in orders]}


def offers_of(order) -> dict:
    return {
        offer.rider_id: (offer.status, offer.withdrawn_reason)
        for offer in Offer.objects.filter(order=order)
    }


# --- The assign page ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_assign_page_lists_online_approved_free_riders_in_range_nearest_first(settings):
    # given riders around the pickup, some of whom must not be offered
    settings.DISPATCH_MAX_RADIUS_M = 12000
    order = searching_order()
    at_1500 = rider_near_pickup(1500)
    at_300 = rider_near_pickup(300)
    at_11k = rider_near_pickup(11000)
    rider_near_pickup(13000)  # beyond DISPATCH_MAX_RADIUS_M
    rider_near_pickup(100, status=Rider.Status.OFFLINE)
    rider_near_pickup(150, status=Rider.Status.ON_DELIVERY)
    rider_near_pickup(200, status=Rider.Status.SUSPENDED)
    rider_near_pickup(250, approved=False)
    inactive = rider_near_pickup(260)
    inactive.user.is_active = False
    inactive.user.save(update_fields=["is_active"])
    RiderFactory(status=Rider.Status.ONLINE)  # never located

    page = signed_in("dispatcher").get(assign_url(order))

    assert page.status_code == 200
    assert listed_riders(page) == [str(at_300.pk), str(at_1500.pk), str(at_11k.pk)]
    html = page.content.decode()
    assert "0.3 km from the pickup" in html and "1.5 km from the pickup" in html
    assert PICKUP["address"] in html and DROP["address"] in html


@pytest.mark.django_db
def test_with_nobody_in_range_the_page_says_so_and_shows_no_form(settings):
    settings.DISPATCH_MAX_RADIUS_M = 5000
    order = searching_order()
    rider_near_pickup(6000)

    page = signed_in("dispatcher").get(assign_url(order))

    assert page.status_code == 200
    assert listed_riders(page) == []
    assert "No online, approved, free rider within 5.0 km" in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("groups", [("finance",), ("support",), ()])
def test_staff_without_the_assign_permission_get_403_and_change_nothing(groups):
    order = searching_order()
    rider = rider_near_pickup(300)
    client = signed_in(*groups)

    assert client.get(assign_url(order)).status_code == 403
    assert client.post(assign_url(order), {"rider": str(rider.pk)}).status_code == 403

    order.refresh_from_db()
    assert (order.status, order.rider_id) == (OrderStatus.SEARCHING_RIDER, None)
    assert Rider.objects.get(pk=rider.pk).status == Rider.Status.ONLINE
    assert not OrderEvent.objects.filter(order=order).exists()


@pytest.mark.django_db
def test_the_assign_page_of_an_order_that_does_not_exist_is_404():
    order = searching_order()
    missing = Order(pk="00000000-0000-4000-8000-000000000000")

    client = signed_in("dispatcher")

    assert client.get(assign_url(order)).status_code == 200
    assert client.get(assign_url(missing)).status_code == 404


# --- Assigning ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_posting_a_rider_assigns_the_order_and_withdraws_the_other_offers(settings):
    # given an order offered to the two nearest riders, and a third rider ops prefer
    settings.DISPATCH_OFFERS_PER_ROUND = 2
    first = rider_near_pickup(300)
    second = rider_near_pickup(500)
    chosen = rider_near_pickup(900)
    order = searching_order()
    dispatch_round(order_id=order.pk)
    ensure_ops_groups()
    staff = ops_user("dispatcher")
    client = Client()
    client.force_login(staff)

    # when a dispatcher assigns the third rider
    response = client.post(assign_url(order), {"rider": str(chosen.pk)})

    # then the order is the chosen rider's and they are on the delivery
    assert response.status_code == 302
    assert response["Location"] == f"{ORDERS}{order.pk}/change/"
    order.refresh_from_db()
    assert (order.status, order.rider_id) == (OrderStatus.RIDER_ASSIGNED, chosen.pk)
    assert Rider.objects.get(pk=chosen.pk).status == Rider.Status.ON_DELIVERY
    # and the riders still holding offers lose them, as assigned by ops, while the offer log
    # records the assignment as an accepted offer of round 0
    assert offers_of(order) == {
        first.pk: (Offer.Status.WITHDRAWN, Offer.Reason.ASSIGNED_BY_OPS),
        second.pk: (Offer.Status.WITHDRAWN, Offer.Reason.ASSIGNED_BY_OPS),
        chosen.pk: (Offer.Status.ACCEPTED, ""),
    }
    assert Offer.objects.get(order=order, rider=chosen).round_number == 0
    assert Rider.objects.get(pk=first.pk).status == Rider.Status.ONLINE
    # and the move is on record as staff's
    event = OrderEvent.objects.get(order=order)
    assert (event.action, event.from_status, event.to_status) == (
        "assign",
        "searching_rider",
        "rider_assigned",
    )
    assert (event.actor_kind, event.actor_id) == ("staff", staff.pk)
    assert staff.phone in event.reason
    # and the order's page says so
    page = client.get(response["Location"])
    assert "Assigned to" in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"status": Rider.Status.OFFLINE},
        {"status": Rider.Status.ON_DELIVERY},
        {"approved": False},
    ],
)
def test_a_forged_post_for_a_rider_not_listed_changes_nothing(fields):
    # given a rider nearby who may not take the order (and one listed, so the form shows)
    order = searching_order()
    rider = rider_near_pickup(300, **fields)
    listed = rider_near_pickup(500)
    before = Rider.objects.get(pk=rider.pk)

    # when a dispatcher posts that rider anyway
    page = signed_in("dispatcher").post(assign_url(order), {"rider": str(rider.pk)})

    # then the form refuses it and nothing moves
    assert page.status_code == 200
    assert "Select a valid choice" in page.content.decode()
    assert listed_riders(page) == [str(listed.pk)]
    order.refresh_from_db()
    assert (order.status, order.rider_id, order.tracking_seq) == (
        OrderStatus.SEARCHING_RIDER,
        None,
        0,
    )
    after = Rider.objects.get(pk=rider.pk)
    assert (after.status, after.approved) == (before.status, before.approved)
    assert not OrderEvent.objects.filter(order=order).exists()
    assert Rider.objects.get(pk=listed.pk).status == Rider.Status.ONLINE


@pytest.mark.django_db
def test_assigning_an_order_no_longer_searching_shows_the_refusal_and_changes_nothing():
    # given an order a rider already took, and another free rider nearby
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    taken_by = order.rider_id
    free = rider_near_pickup(300)

    page = signed_in("dispatcher").post(assign_url(order), {"rider": str(free.pk)}, follow=True)

    assert page.status_code == 200
    assert "cannot do assign" in page.content.decode()
    order.refresh_from_db()
    assert (order.status, order.rider_id) == (OrderStatus.RIDER_ASSIGNED, taken_by)
    assert Rider.objects.get(pk=free.pk).status == Rider.Status.ONLINE


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_assigned_riders_socket_hears_of_it_and_offer_holders_hear_the_withdrawal(
    settings,
):
    # given an order offered to one rider, and another rider ops choose, both connected
    settings.DISPATCH_OFFERS_PER_ROUND = 1
    holder = await database_sync_to_async(rider_near_pickup)(300)
    chosen = await database_sync_to_async(rider_near_pickup)(900)
    order = await database_sync_to_async(searching_order)()
    await database_sync_to_async(dispatch_round)(order_id=order.pk)
    offer = await database_sync_to_async(Offer.objects.get)(order=order)
    client = await database_sync_to_async(signed_in)("dispatcher")
    sockets = [await rider_socket(rider) for rider in (chosen, holder)]
    chosen_socket, holder_socket = sockets

    try:
        # when a dispatcher assigns the order in the admin
        response = await database_sync_to_async(client.post)(
            assign_url(order), {"rider": str(chosen.pk)}
        )
        assert response.status_code == 302

        # then the chosen rider's app gets the trip and the pay
        assert await chosen_socket.receive_json_from(timeout=3) == {
            "type": "assigned",
            "order_id": str(order.pk),
            "pickup": {"lat": PICKUP["lat"], "lng": PICKUP["lng"], "address": "MG Road"},
            "drop": {"lat": DROP["lat"], "lng": DROP["lng"], "address": "Koramangala"},
            "pay_paise": settings.RIDER_FIXED_PAY_PER_ORDER_PAISE,
            "cash_to_collect_paise": order.amount_paise,  # cash on delivery
        }
        # and the rider holding an offer hears it is gone, assigned by ops
        assert await holder_socket.receive_json_from(timeout=3) == {
            "type": "offer_withdrawn",
            "offer_id": str(offer.pk),
            "order_id": str(order.pk),
            "reason": "assigned_by_ops",
        }
        for communicator in sockets:
            assert await communicator.receive_nothing(timeout=0.2)
    finally:
        for communicator in sockets:
            await communicator.disconnect()


async def rider_socket(rider) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/rider/?token={access_token(rider.user)}", headers=HEADERS
    )
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    return communicator


# --- Unassigning and delivery-code tries -------------------------------------------------------


@pytest.mark.django_db
def test_the_unassign_action_puts_the_order_back_to_searching_and_frees_the_rider():
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    rider = order.rider
    client = signed_in("dispatcher")

    response = client.post(ORDERS, action("unassign_selected", order), follow=True)

    assert response.status_code == 200
    assert "1 order(s) unassigned." in response.content.decode()
    order.refresh_from_db()
    assert (order.status, order.rider_id, order.tracking_seq) == (
        OrderStatus.SEARCHING_RIDER,
        None,
        1,
    )
    assert Rider.objects.get(pk=rider.pk).status == Rider.Status.ONLINE
    event = OrderEvent.objects.get(order=order)
    assert (event.action, event.actor_kind) == ("release", "staff")


@pytest.mark.django_db
def test_a_rider_assigned_by_hand_and_unassigned_is_not_offered_the_order_again(
    settings, django_capture_on_commit_callbacks
):
    # given a rider assigned by hand, the only one near the pickup, and another farther away
    settings.DISPATCH_OFFERS_PER_ROUND = 1
    unassigned = rider_near_pickup(300)
    other = rider_near_pickup(2000)
    order = searching_order()
    client = signed_in("dispatcher")
    client.post(assign_url(order), {"rider": str(unassigned.pk)})

    # when ops unassign them and the order's next round runs (inline here)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(ORDERS, action("unassign_selected", order))

    # then the order is offered to the other rider, not back to the one just taken off it
    assert offers_of(order) == {
        unassigned.pk: (Offer.Status.RELEASED, ""),
        other.pk: (Offer.Status.PENDING, ""),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("groups", [("finance",), ("support",)])
def test_staff_without_the_assign_permission_cannot_run_the_unassign_action(groups):
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    rider_id = order.rider_id
    client = signed_in(*groups)

    # the action is not offered to them
    changelist = client.get(ORDERS)
    assert changelist.status_code == 200
    assert 'value="unassign_selected"' not in changelist.content.decode()

    # and posting it anyway does nothing
    client.post(ORDERS, action("unassign_selected", order))

    order.refresh_from_db()
    assert (order.status, order.rider_id) == (OrderStatus.RIDER_ASSIGNED, rider_id)
    assert Rider.objects.get(pk=rider_id).status == Rider.Status.ON_DELIVERY
    assert not OrderEvent.objects.filter(order=order).exists()


@pytest.mark.django_db
def test_unassigning_after_the_pickup_is_refused_per_order():
    picked = OrderFactory(status=OrderStatus.PICKED_UP)
    assigned = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)

    page = signed_in("dispatcher").post(
        ORDERS, action("unassign_selected", picked, assigned), follow=True
    )

    # (the admin capitalises each message, so a uuid may start in upper case)
    html = page.content.decode().lower()
    assert f"{picked.pk}: an order that is picked up cannot do release." in html
    assert "1 order(s) unassigned." in html
    picked.refresh_from_db()
    assigned.refresh_from_db()
    assert (picked.status, picked.rider_id is not None) == (OrderStatus.PICKED_UP, True)
    assert assigned.status == OrderStatus.SEARCHING_RIDER


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_unassigned_riders_socket_hears_of_it():
    order = await database_sync_to_async(OrderFactory)(status=OrderStatus.RIDER_ASSIGNED)
    client = await database_sync_to_async(signed_in)("dispatcher")
    socket = await rider_socket(order.rider)

    try:
        response = await database_sync_to_async(client.post)(
            ORDERS, action("unassign_selected", order)
        )
        assert response.status_code == 302

        frame = await socket.receive_json_from(timeout=3)
        assert (frame["type"], frame["order_id"]) == ("unassigned", str(order.pk))
        assert frame.get("status", "searching_rider") == "searching_rider"
        assert await socket.receive_nothing(timeout=0.3)
    finally:
        await socket.disconnect()

    released = await database_sync_to_async(Order.objects.get)(pk=order.pk)
    assert (released.status, released.rider_id) == (OrderStatus.SEARCHING_RIDER, None)
    rider = await database_sync_to_async(Rider.objects.get)(pk=order.rider_id)
    assert rider.status == Rider.Status.ONLINE


@pytest.mark.django_db
def test_reset_delivery_code_tries_zeroes_the_count_for_dispatchers_only():
    order = OrderFactory(status=OrderStatus.AT_DROPOFF)
    Order.objects.filter(pk=order.pk).update(delivery_code_attempts=5)

    signed_in("finance").post(ORDERS, action("reset_delivery_code_tries", order))
    assert Order.objects.get(pk=order.pk).delivery_code_attempts == 5

    page = signed_in("dispatcher").post(
        ORDERS, action("reset_delivery_code_tries", order), follow=True
    )

    assert "1 order(s) given new delivery-code tries." in page.content.decode()
    order.refresh_from_db()
    assert (order.delivery_code_attempts, order.status) == (0, OrderStatus.AT_DROPOFF)


# --- The order's page --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_searching_orders_page_links_dispatchers_to_the_assign_page():
    order = searching_order()

    page = signed_in("dispatcher").get(f"{ORDERS}{order.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="{assign_url(order)}"' in html
    assert "Assign a rider</a>" in html


@pytest.mark.django_db
def test_no_assign_link_for_an_order_not_searching_nor_for_finance():
    assigned = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    searching = searching_order()

    dispatcher_page = signed_in("dispatcher").get(f"{ORDERS}{assigned.pk}/change/")
    finance_page = signed_in("finance").get(f"{ORDERS}{searching.pk}/change/")

    assert dispatcher_page.status_code == finance_page.status_code == 200
    assert assign_url(assigned) not in dispatcher_page.content.decode()
    assert "Only an order searching for a rider can be assigned." in (
        dispatcher_page.content.decode()
    )
    assert assign_url(searching) not in finance_page.content.decode()
    assert "Assign by hand" not in finance_page.content.decode()
