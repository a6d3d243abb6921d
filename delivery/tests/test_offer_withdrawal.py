"""Pending offers follow their order and their rider: withdrawn when the order stops searching
or the rider is no longer available (with the next round for the order), and an accepted offer
released when ops unassign the rider, so that someone else can take the order.

transaction=True throughout: withdrawals, frames and the next round all happen after commit,
as in production; Celery tasks run inline (conftest).
"""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from accounts.tests.factories import UserFactory
from config.asgi import application
from delivery.models import DispatchRound, Offer
from delivery.services.dispatch import dispatch_round, dispatch_sweep
from delivery.services.staff_actions import order_unassign_by_staff
from delivery.tasks import sweep_stale_offers
from delivery.tests.communicator import WebsocketCommunicator
from delivery.tests.support import accept_url, rider_client, rider_near_pickup, searching_order
from delivery.tests.test_delivery_consumer import dispatcher
from orders.models import Order, OrderStatus
from orders.tests.support import client_for, order_url
from riders.models import Rider
from riders.tasks import set_idle_riders_offline
from riders.tests.factories import access_token
from riders.tests.support import OFFLINE_URL, ONLINE_URL

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
WITHDRAWN = Offer.Status.WITHDRAWN
PENDING = Offer.Status.PENDING


def outcomes(order) -> dict:
    """Every offer of the order: rider id -> (status, withdrawn reason, round)."""
    return {
        offer.rider_id: (offer.status, offer.withdrawn_reason, offer.round_number)
        for offer in Offer.objects.filter(order=order)
    }


def offer_of(order, rider) -> Offer:
    return Offer.objects.get(order=order, rider=rider)


def rounds(order) -> int:
    return DispatchRound.objects.filter(order=order).count()


@pytest.fixture
def offered(settings):
    """A searching order offered to the nearer of two riders (one offer per round)."""
    settings.DISPATCH_OFFERS_PER_ROUND = 1
    near = rider_near_pickup(300)
    far = rider_near_pickup(800)
    order = searching_order()
    dispatch_round(order_id=order.pk)
    assert outcomes(order) == {near.pk: (PENDING, "", 1)}
    return order, near, far


def assert_moved_on_to(order, *, withdrawn_from, offered_to) -> None:
    """The first rider's offer withdrawn as unavailable, the order's next round offered to the
    second, and nothing else."""
    assert outcomes(order) == {
        withdrawn_from.pk: (WITHDRAWN, Offer.Reason.RIDER_UNAVAILABLE, 1),
        offered_to.pk: (PENDING, "", 2),
    }
    assert rounds(order) == 2
    assert Order.objects.get(pk=order.pk).status == OrderStatus.SEARCHING_RIDER


async def rider_socket(rider) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/rider/?token={access_token(rider.user)}", headers=HEADERS
    )
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    return communicator


# --- The order stops searching -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_customer_cancelling_withdraws_the_offers_with_no_next_round(settings):
    # given an order offered to two of three riders nearby, the nearest one connected
    settings.DISPATCH_OFFERS_PER_ROUND = 2
    nearest = await database_sync_to_async(rider_near_pickup)(300)
    second = await database_sync_to_async(rider_near_pickup)(600)
    third = await database_sync_to_async(rider_near_pickup)(900)
    order = await database_sync_to_async(searching_order)()
    await database_sync_to_async(dispatch_round)(order_id=order.pk)
    offer = await database_sync_to_async(offer_of)(order, nearest)
    socket = await rider_socket(nearest)

    try:
        # when the customer cancels
        response = await database_sync_to_async(
            lambda: client_for(order.customer).post(order_url(order.pk, "cancel"), format="json")
        )()
        assert response.status_code == 200, response.content

        # then the connected rider is told the offer is gone, and why
        frame = await socket.receive_json_from(timeout=3)
        assert frame == {
            "type": "offer_withdrawn",
            "offer_id": str(offer.pk),
            "order_id": str(order.pk),
            "reason": "order_closed",
        }
        assert await socket.receive_nothing(timeout=0.3)
    finally:
        await socket.disconnect()

    # and both offers are withdrawn as order_closed, with no further round for the third rider
    assert await database_sync_to_async(outcomes)(order) == {
        nearest.pk: (WITHDRAWN, Offer.Reason.ORDER_CLOSED, 1),
        second.pk: (WITHDRAWN, Offer.Reason.ORDER_CLOSED, 1),
    }
    assert await database_sync_to_async(rounds)(order) == 1
    assert not await database_sync_to_async(Offer.objects.filter(rider=third).exists)()
    # not even when the sweep comes by
    assert await database_sync_to_async(dispatch_sweep)() == 0
    assert await database_sync_to_async(rounds)(order) == 1


# --- The rider is no longer available ----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_rider_going_offline_over_http_loses_the_offer_and_the_next_rider_gets_it(
    offered,
):
    order, near, far = offered
    offer = await database_sync_to_async(offer_of)(order, near)
    near_socket = await rider_socket(near)
    far_socket = await rider_socket(far)

    try:
        # when the offered rider goes offline in the app
        response = await database_sync_to_async(
            lambda: rider_client(near).post(OFFLINE_URL, format="json")
        )()
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "offline"

        # then their app hears the offer is withdrawn
        assert await near_socket.receive_json_from(timeout=3) == {
            "type": "offer_withdrawn",
            "offer_id": str(offer.pk),
            "order_id": str(order.pk),
            "reason": "rider_unavailable",
        }
        # and the other rider is offered the order in the next round at once
        frame = await far_socket.receive_json_from(timeout=3)
        assert (frame["type"], frame["order_id"]) == ("offer", str(order.pk))
        far_offer = await database_sync_to_async(offer_of)(order, far)
        assert frame["offer_id"] == str(far_offer.pk)
    finally:
        await near_socket.disconnect()
        await far_socket.disconnect()

    await database_sync_to_async(assert_moved_on_to)(order, withdrawn_from=near, offered_to=far)


def test_withdrawing_approval_in_the_admin_withdraws_the_riders_offers(offered):
    order, near, far = offered
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True, is_customer=False))

    response = admin.post(
        "/admin/riders/rider/",
        {"action": "withdraw_approval", "_selected_action": [str(near.pk)]},
    )

    assert response.status_code == 302
    near.refresh_from_db()
    assert (near.approved, near.status) == (False, Rider.Status.OFFLINE)
    assert_moved_on_to(order, withdrawn_from=near, offered_to=far)


def test_suspending_a_rider_in_the_admin_withdraws_their_offers(offered):
    order, near, far = offered
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True, is_customer=False))

    response = admin.post(
        f"/admin/riders/rider/{near.pk}/change/",
        {
            "user": str(near.user_id),
            "vehicle_type": near.vehicle_type,
            "vehicle_number": near.vehicle_number,
            "approved": "on",
            "status": Rider.Status.SUSPENDED,
            "last_location": near.last_location.geojson,
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    near.refresh_from_db()
    assert near.status == Rider.Status.SUSPENDED
    assert_moved_on_to(order, withdrawn_from=near, offered_to=far)


def test_the_idle_task_setting_a_silent_rider_offline_withdraws_their_offer(offered, settings):
    # given the offered rider silent (no fix, no status change) for longer than the limit
    order, near, far = offered
    long_ago = timezone.now() - timedelta(minutes=settings.RIDER_IDLE_OFFLINE_MINUTES + 1)
    Rider.objects.filter(pk=near.pk).update(last_location_at=long_ago, status_changed_at=long_ago)

    # when the periodic task runs
    assert set_idle_riders_offline.delay().get() == 1

    # then only that rider went offline, and the order moved on to the other one
    assert Rider.objects.get(pk=near.pk).status == Rider.Status.OFFLINE
    assert Rider.objects.get(pk=far.pk).status == Rider.Status.ONLINE
    assert_moved_on_to(order, withdrawn_from=near, offered_to=far)


@pytest.mark.parametrize(
    "change",
    [
        {"status": Rider.Status.OFFLINE},
        {"status": Rider.Status.SUSPENDED},
        {"approved": False},
    ],
)
def test_the_sweep_withdraws_offers_of_a_rider_changed_behind_the_services_back(offered, change):
    # given the offered rider made unavailable by a raw update: no service, no withdrawal
    order, near, far = offered
    Rider.objects.filter(pk=near.pk).update(**change)
    assert offer_of(order, near).status == PENDING

    # when the periodic sweep runs
    sweep_stale_offers.delay()

    # then it withdraws the offer and the order's next round goes to the other rider
    assert_moved_on_to(order, withdrawn_from=near, offered_to=far)


def test_accepting_a_withdrawn_offer_is_409_even_once_back_online(offered):
    # given the offered rider went offline (the offer withdrawn, the order offered to the
    # other rider) and came back online
    order, near, far = offered
    offer = offer_of(order, near)
    client = rider_client(near)
    assert client.post(OFFLINE_URL).status_code == 200
    assert client.post(ONLINE_URL).status_code == 200
    assert Rider.objects.get(pk=near.pk).status == Rider.Status.ONLINE

    # when they accept the old offer
    response = client.post(accept_url(offer))

    # then it is refused, and nothing changed
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "offer_not_available"
    assert Order.objects.get(pk=order.pk).status == OrderStatus.SEARCHING_RIDER
    assert Rider.objects.get(pk=near.pk).status == Rider.Status.ONLINE
    assert_moved_on_to(order, withdrawn_from=near, offered_to=far)


# --- Ops take an accepted order back -----------------------------------------------------------


def test_an_unassigned_orders_accepted_offer_is_released_and_another_rider_can_accept(offered):
    # given the order accepted by the nearer rider
    order, near, far = offered
    accepted = rider_client(near).post(accept_url(offer_of(order, near)))
    assert accepted.status_code == 200, accepted.content
    assert Order.objects.get(pk=order.pk).rider_id == near.pk

    # when ops unassign it
    order_unassign_by_staff(order_id=order.pk, staff=dispatcher())

    # then the accepted offer is released, the rider is free, and the next round (at once)
    # offers the order to the other rider, not again to the one taken off it
    assert outcomes(order) == {
        near.pk: (Offer.Status.RELEASED, "", 1),
        far.pk: (PENDING, "", 2),
    }
    assert Rider.objects.get(pk=near.pk).status == Rider.Status.ONLINE
    released = Order.objects.get(pk=order.pk)
    assert (released.status, released.rider_id) == (OrderStatus.SEARCHING_RIDER, None)

    # and when the other rider accepts, the order is theirs (one accepted offer per order)
    response = rider_client(far).post(accept_url(offer_of(order, far)))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    taken = Order.objects.get(pk=order.pk)
    assert (taken.status, taken.rider_id) == (OrderStatus.RIDER_ASSIGNED, far.pk)
    assert outcomes(order) == {
        near.pk: (Offer.Status.RELEASED, "", 1),
        far.pk: (Offer.Status.ACCEPTED, "", 2),
    }
    assert Rider.objects.get(pk=far.pk).status == Rider.Status.ON_DELIVERY
