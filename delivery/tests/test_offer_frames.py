"""Offers reach a connected rider's socket, and so does their withdrawal.

Through config.asgi.application and the real (Redis) channel layer; transaction=True because
the services run in other threads and their messages go out after commit.
"""

import pytest
from channels.db import database_sync_to_async

from config.asgi import application
from delivery.models import Offer
from delivery.services.dispatch import dispatch_round, offer_accept
from delivery.tests.communicator import WebsocketCommunicator
from delivery.tests.support import rider_near_pickup, searching_order
from orders.tests.factories import DROP, PICKUP
from riders.tests.factories import access_token

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

HEADERS = [(b"origin", b"http://testserver"), (b"host", b"testserver")]


async def test_a_connected_rider_gets_the_offer_and_then_its_withdrawal(settings):
    # given two riders near a searching order, the farther one connected
    settings.DISPATCH_OFFERS_PER_ROUND = 2
    near = await database_sync_to_async(rider_near_pickup)(300)
    far = await database_sync_to_async(rider_near_pickup)(800)
    order = await database_sync_to_async(searching_order)()
    socket = WebsocketCommunicator(
        application, f"/ws/rider/?token={access_token(far.user)}", headers=HEADERS
    )
    connected, _ = await socket.connect(timeout=3)
    assert connected

    try:
        # when the order is dispatched
        await database_sync_to_async(dispatch_round)(order_id=order.pk)

        # then the offer arrives, with the trip and the pay but nothing about the customer
        frame = await socket.receive_json_from(timeout=3)
        offer = await database_sync_to_async(Offer.objects.get)(rider=far)
        assert frame == {
            "type": "offer",
            "offer_id": str(offer.pk),
            "order_id": str(order.pk),
            "pickup": {"lat": PICKUP["lat"], "lng": PICKUP["lng"], "address": "MG Road"},
            "drop": {"lat": DROP["lat"], "lng": DROP["lng"], "address": "Koramangala"},
            "distance_m": offer.distance_m,
            "pay_paise": settings.RIDER_FIXED_PAY_PER_ORDER_PAISE,
            "cash_to_collect_paise": order.amount_paise,  # a cash-on-delivery order
            "expires_at": offer.expires_at.isoformat(),
        }

        # and when the nearer rider takes the order, the offer is withdrawn from this one
        near_offer = await database_sync_to_async(Offer.objects.get)(rider=near)
        await database_sync_to_async(offer_accept)(offer_id=near_offer.pk, rider=near)
        frame = await socket.receive_json_from(timeout=3)
        assert frame == {
            "type": "offer_withdrawn",
            "offer_id": str(offer.pk),
            "order_id": str(order.pk),
            "reason": "taken",
        }
    finally:
        await socket.disconnect()
