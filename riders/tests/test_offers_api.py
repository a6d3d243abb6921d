"""Offers through the rider API: listing live ones, accepting and declining."""

import asyncio
import contextlib
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from core import realtime
from delivery.models import Offer
from delivery.services.dispatch import dispatch_round
from delivery.tests.support import (
    OFFERS_URL,
    accept_url,
    decline_url,
    rider_client,
    rider_near_pickup,
    searching_order,
)
from orders.models import OrderStatus
from orders.tests.factories import DROP, PICKUP
from riders.models import Rider
from riders.tests.support import as_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def offered(settings):
    """An order offered to two riders: (order, nearer rider's offer, farther rider's offer)."""
    settings.DISPATCH_OFFERS_PER_ROUND = 2
    near, far = rider_near_pickup(300), rider_near_pickup(900)
    order = searching_order()
    dispatch_round(order_id=order.pk)
    return order, Offer.objects.get(rider=near), Offer.objects.get(rider=far)


def test_a_rider_sees_their_live_offers_with_the_trip_and_the_pay(offered, settings):
    order, offer, _ = offered

    response = rider_client(offer.rider).get(OFFERS_URL)

    assert response.status_code == 200
    (body,) = response.json()
    assert body["id"] == str(offer.pk)
    assert body["order_id"] == str(order.pk)
    assert body["pickup"] == {"lat": PICKUP["lat"], "lng": PICKUP["lng"], "address": "MG Road"}
    assert body["drop"] == {"lat": DROP["lat"], "lng": DROP["lng"], "address": "Koramangala"}
    assert body["distance_m"] == offer.distance_m
    assert body["pay_paise"] == settings.RIDER_FIXED_PAY_PER_ORDER_PAISE
    assert body["status"] == "pending"
    assert "customer" not in body


def test_expired_and_answered_offers_are_not_listed(offered):
    _, offer, other = offered
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    Offer.objects.filter(pk=other.pk).update(status=Offer.Status.DECLINED)

    assert rider_client(offer.rider).get(OFFERS_URL).json() == []
    assert rider_client(other.rider).get(OFFERS_URL).json() == []


def test_offers_of_an_order_cancelled_meanwhile_are_not_listed_nor_acceptable(offered):
    order, offer, _ = offered
    order.status = OrderStatus.CANCELLED
    order.save(update_fields=["status"])
    client = rider_client(offer.rider)

    assert client.get(OFFERS_URL).json() == []
    assert client.post(accept_url(offer)).status_code == 409


def test_accepting_assigns_the_order_and_withdraws_the_other_offers(
    offered, django_capture_on_commit_callbacks
):
    order, offer, other = offered

    with django_capture_on_commit_callbacks(execute=True):
        response = rider_client(offer.rider).post(accept_url(offer))

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    order.refresh_from_db()
    assert (order.status, order.rider_id) == (OrderStatus.RIDER_ASSIGNED, offer.rider_id)
    assert Rider.objects.get(pk=offer.rider_id).status == Rider.Status.ON_DELIVERY
    other.refresh_from_db()
    assert other.status == Offer.Status.WITHDRAWN
    # the loser, arriving after, is told the offer is gone
    late = rider_client(other.rider).post(accept_url(other))
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "offer_not_available"


def test_an_expired_offer_cannot_be_accepted(offered):
    order, offer, _ = offered
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = rider_client(offer.rider).post(accept_url(offer))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "offer_not_available"
    order.refresh_from_db()
    assert order.status == OrderStatus.SEARCHING_RIDER


def test_a_rider_already_on_a_delivery_cannot_accept_another_order(settings):
    settings.DISPATCH_MAX_LIVE_OFFERS_PER_RIDER = 2
    rider = rider_near_pickup(300)
    first, second = searching_order(), searching_order()
    dispatch_round(order_id=first.pk)
    dispatch_round(order_id=second.pk)
    client = rider_client(rider)
    assert client.post(accept_url(Offer.objects.get(order=first))).status_code == 200

    response = client.post(accept_url(Offer.objects.get(order=second)))

    assert response.status_code == 409
    second.refresh_from_db()
    assert second.status == OrderStatus.SEARCHING_RIDER


def test_another_riders_offer_is_not_found(offered):
    _, offer, other = offered

    response = rider_client(other.rider).post(accept_url(offer))

    assert response.status_code == 404
    assert Offer.objects.get(pk=offer.pk).status == Offer.Status.PENDING


def test_declining_the_last_pending_offer_starts_the_next_round(
    settings, django_capture_on_commit_callbacks
):
    # given an order offered to the nearest rider only, and another rider farther out
    settings.DISPATCH_OFFERS_PER_ROUND = 1
    near, far = rider_near_pickup(300), rider_near_pickup(900)
    order = searching_order()
    dispatch_round(order_id=order.pk)
    offer = Offer.objects.get(order=order)
    assert offer.rider_id == near.pk

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = rider_client(near).post(decline_url(offer))

    # then
    assert response.status_code == 200
    assert response.json()["status"] == "declined"
    assert Offer.objects.get(pk=offer.pk).responded_at is not None
    (next_offer,) = Offer.objects.filter(order=order, status=Offer.Status.PENDING)
    assert (next_offer.rider_id, next_offer.round_number) == (far.pk, 2)
    # and declining again is refused
    assert rider_client(near).post(decline_url(offer)).status_code == 409


def test_declining_while_other_offers_are_pending_waits_for_them(
    offered, django_capture_on_commit_callbacks
):
    order, offer, other = offered
    rider_near_pickup(1500)  # would be offered by a new round

    with django_capture_on_commit_callbacks(execute=True):
        assert rider_client(offer.rider).post(decline_url(offer)).status_code == 200

    assert list(Offer.objects.filter(order=order, status=Offer.Status.PENDING)) == [other]


@pytest.mark.parametrize("url", [OFFERS_URL, "accept", "decline"])
def test_customers_are_refused(offered, api_client, url):
    _, offer, _ = offered
    path = {"accept": accept_url(offer), "decline": decline_url(offer)}.get(url, url)
    client = as_user(api_client, UserFactory(is_customer=True))

    response = client.get(path) if url == OFFERS_URL else client.post(path)

    assert response.status_code == 403
    assert Offer.objects.get(pk=offer.pk).status == Offer.Status.PENDING


def test_an_accept_tells_everyone_in_three_trips_to_the_event_loop_however_many_were_offered(
    settings, django_capture_on_commit_callbacks, monkeypatch
):
    # given an order offered to five riders, whose sockets listen on their groups
    settings.DISPATCH_OFFERS_PER_ROUND = 5
    riders = [rider_near_pickup(300 + 100 * n) for n in range(5)]
    order = searching_order()
    dispatch_round(order_id=order.pk)
    offer = Offer.objects.get(rider=riders[0])
    trips = []
    send_each = realtime._send_each

    async def counted(messages):  # one trip to the event loop, however the messages got there
        trips.append(messages)
        await send_each(messages)

    monkeypatch.setattr(realtime, "_send_each", counted)

    def accept():
        with django_capture_on_commit_callbacks(execute=True):
            return rider_client(offer.rider).post(accept_url(offer))

    async def heard_while_accepting() -> tuple[object, list[dict]]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        groups = [realtime.rider_group(r.pk) for r in riders[1:]]
        groups += [realtime.order_group(order.pk), realtime.OPS_GROUP]
        for group in groups:
            await layer.group_add(group, channel)
        try:
            response = await sync_to_async(accept)()
            heard = []
            with contextlib.suppress(TimeoutError):
                while True:
                    heard.append(await asyncio.wait_for(layer.receive(channel), timeout=2))
            return response, heard
        finally:
            for group in groups:
                await layer.group_discard(group, channel)

    # when the nearest rider accepts
    response, heard = async_to_sync(heard_while_accepting)()

    # then the four others were told their offer is gone, the customer and the consoles saw the
    # order assigned and the consoles the rider's new status: seven messages in three trips
    # (the withdrawals, the order's status, the rider's status), not one trip each
    assert response.status_code == 200
    kinds = sorted(message["type"] for message in heard)
    assert kinds.count("offer_withdrawn") == 4, kinds
    assert "status" in kinds and len(heard) >= 7, kinds
    assert len(trips) == 3


def test_a_customer_cancel_tells_the_offered_riders_and_everyone_in_two_trips(
    settings, django_capture_on_commit_callbacks, monkeypatch
):
    # given an order offered to five riders
    settings.DISPATCH_OFFERS_PER_ROUND = 5
    for n in range(5):
        rider_near_pickup(300 + 100 * n)
    order = searching_order()
    dispatch_round(order_id=order.pk)
    trips = []
    send_each = realtime._send_each

    async def counted(messages):  # one trip to the event loop, however the messages got there
        trips.append(messages)
        await send_each(messages)

    monkeypatch.setattr(realtime, "_send_each", counted)

    # when its customer cancels it
    with django_capture_on_commit_callbacks(execute=True):
        response = as_user(APIClient(), order.customer).post(
            f"/api/v1/orders/{order.pk}/cancel/", {}, format="json"
        )

    # then the five withdrawals go out in one trip and the order's status in another
    assert response.status_code == 200, response.content
    assert Offer.objects.filter(order=order, status=Offer.Status.WITHDRAWN).count() == 5
    assert len(trips) == 2
