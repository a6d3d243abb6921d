"""/ws/ops/: who may open the ops console's feed, and what it hears.

Through config.asgi.application and the real (Redis) channel layer, so the origin check, the
JWT and session middleware and the group messages are the real ones. transaction=True: the
services send after commit, and the consumer works in other threads.
"""

from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from config.asgi import application
from core.realtime import (
    OPS_GROUP,
    OPS_MOVES_SECONDS,
    location_broadcast,
    ops_alerts_changed_message,
)
from delivery.services.staff_actions import order_assign_by_staff
from delivery.tests.communicator import WebsocketCommunicator
from delivery.tests.support import north_of_pickup, rider_near_pickup, searching_order
from ops.consumers import OpsConsumer
from orders.tests.support import ops_user
from riders.models import Rider
from riders.services import rider_go_offline, rider_go_online, rider_location_record
from riders.tasks import set_idle_riders_offline
from riders.tests.factories import RiderFactory, access_token
from riders.tests.support import LOCATION_URL, MG_ROAD, as_user, fix

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

HEADERS = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
PATH = "/ws/ops/"


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def browser_socket(user) -> WebsocketCommunicator:
    """The console page's socket: the admin session's cookie, no token."""
    cookie = await database_sync_to_async(session_cookie)(user)
    return WebsocketCommunicator(application, PATH, headers=[*HEADERS, (b"cookie", cookie)])


def token_socket(token: str | None) -> WebsocketCommunicator:
    path = PATH + (f"?token={token}" if token is not None else "")
    return WebsocketCommunicator(application, path, headers=HEADERS)


async def close_code(communicator: WebsocketCommunicator) -> int:
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    message = await communicator.receive_output(timeout=3)
    assert message["type"] == "websocket.close", message
    await communicator.disconnect()
    return message["code"]


@asynccontextmanager
async def console(user):
    """An open console socket for `user`, its "ready" frame read."""
    communicator = await browser_socket(user)
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    try:
        assert await communicator.receive_json_from(timeout=3) == {"type": "ready"}
        yield communicator
    finally:
        await communicator.disconnect()


async def frame_of_type(communicator, frame_type: str, **match) -> dict:
    """The next frame of `frame_type` matching `match`, skipping others (e.g. rider_status)."""
    for _ in range(20):
        frame = await communicator.receive_json_from(timeout=3)
        if frame["type"] == frame_type and all(frame.get(k) == v for k, v in match.items()):
            return frame
    raise AssertionError(f"no {frame_type} frame matching {match}")


dispatcher = database_sync_to_async(lambda: ops_user("dispatcher"))


# --- Who may connect ---------------------------------------------------------------------------


async def test_anonymous_sockets_are_closed_with_4401():
    assert await close_code(token_socket(None)) == 4401
    assert await close_code(token_socket("not-a-jwt")) == 4401


async def test_signed_in_people_without_the_consoles_permissions_are_closed_with_4403():
    customer = await database_sync_to_async(UserFactory)()
    rider = await database_sync_to_async(RiderFactory)()
    no_group = await database_sync_to_async(ops_user)()
    finance = await database_sync_to_async(ops_user)("finance")

    assert await close_code(token_socket(access_token(customer))) == 4403
    assert await close_code(token_socket(access_token(rider.user))) == 4403
    assert await close_code(await browser_socket(no_group)) == 4403
    assert await close_code(await browser_socket(finance)) == 4403


async def test_a_dispatcher_opens_it_with_the_session_cookie_or_a_token():
    staff = await dispatcher()

    async with console(staff):
        pass
    communicator = token_socket(access_token(staff))
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    assert await communicator.receive_json_from(timeout=3) == {"type": "ready"}
    await communicator.disconnect()


async def test_a_foreign_origin_is_refused_at_the_handshake():
    staff = await dispatcher()
    cookie = await database_sync_to_async(session_cookie)(staff)
    communicator = WebsocketCommunicator(
        application,
        PATH,
        headers=[
            (b"origin", b"https://evil.example"),
            (b"host", b"testserver"),
            (b"cookie", cookie),
        ],
    )

    connected, _ = await communicator.connect(timeout=3)

    assert not connected


async def test_staff_whose_group_is_taken_away_stop_watching(monkeypatch):
    # given a dispatcher watching the console, whose rights are read again at every frame
    monkeypatch.setattr(OpsConsumer, "recheck_seconds", 0.0)
    staff = await dispatcher()
    rider = await database_sync_to_async(rider_near_pickup)(300, status=Rider.Status.OFFLINE)
    async with console(staff) as communicator:
        await database_sync_to_async(rider_go_online)(rider=rider)
        await frame_of_type(communicator, "rider_status", rider_id=str(rider.pk))

        # when ops take their group away, and something happens
        await database_sync_to_async(staff.groups.clear)()
        await database_sync_to_async(rider_go_offline)(rider=rider)

        # then the socket closes with 4403 instead of relaying it
        closed = await communicator.receive_output(timeout=3)

    assert closed == {"type": "websocket.close", "code": 4403}


async def test_it_is_read_only():
    async with console(await dispatcher()) as communicator:
        await communicator.send_to(text_data='{"type": "assign"}')
        reply = await communicator.receive_json_from(timeout=3)

    assert reply["code"] == "read_only"


# --- What it hears -----------------------------------------------------------------------------


async def test_a_riders_ping_reaches_the_console_with_the_position():
    # given an idle rider (no order: the order's sockets hear nothing) and a console
    rider = await database_sync_to_async(rider_near_pickup)(300, seconds_ago=30)
    async with console(await dispatcher()) as communicator:
        # when the rider's app pings over HTTP, 50 m further on
        moved_to = north_of_pickup(350)
        body = fix(moved_to, seconds_ago=1)
        response = await database_sync_to_async(
            lambda: as_user(APIClient(), rider.user).post(LOCATION_URL, body, format="json")
        )()
        assert response.status_code == 202, response.content

        # then the console hears where the rider is now
        frame = await frame_of_type(communicator, "riders_moved")

    (move,) = frame["riders"]
    assert move["rider_id"] == str(rider.pk)
    assert (move["lat"], move["lng"]) == moved_to
    assert datetime.fromisoformat(move["at"]) == datetime.fromisoformat(body["recorded_at"])
    assert set(frame) == {"type", "riders"}
    assert set(move) == {"rider_id", "lat", "lng", "at"}


async def test_moves_within_a_second_reach_the_console_together_at_their_newest():
    # given two idle riders and a console
    first = await database_sync_to_async(rider_near_pickup)(300, seconds_ago=30)
    second = await database_sync_to_async(rider_near_pickup)(400, seconds_ago=30)
    store = database_sync_to_async(rider_location_record)
    async with console(await dispatcher()) as communicator:
        # when the first rider pings three times and the second once, in quick succession
        for rider, seconds_ago, metres in [
            (first, 20, 320),
            (first, 15, 340),
            (second, 12, 420),
            (first, 10, 360),
        ]:
            lat, lng = north_of_pickup(metres)
            receipt = await store(
                user_id=rider.user_id,
                lat=lat,
                lng=lng,
                recorded_at=timezone.now() - timedelta(seconds=seconds_ago),
            )
            await location_broadcast(receipt)

        # then the first move goes out at once, the rest together after OPS_MOVES_SECONDS
        at_once = await communicator.receive_json_from(timeout=0.5)
        assert await communicator.receive_nothing(timeout=OPS_MOVES_SECONDS / 2)
        together = await communicator.receive_json_from(timeout=OPS_MOVES_SECONDS * 2)

    assert [move["lat"] for move in at_once["riders"]] == [north_of_pickup(320)[0]]
    newest = {move["rider_id"]: move["lat"] for move in together["riders"]}
    assert newest == {
        str(first.pk): north_of_pickup(360)[0],
        str(second.pk): north_of_pickup(420)[0],
    }


async def test_an_older_fix_than_the_latest_is_not_sent():
    rider = await database_sync_to_async(rider_near_pickup)(300, seconds_ago=5)
    async with console(await dispatcher()) as communicator:
        receipt = await database_sync_to_async(rider_location_record)(
            user_id=rider.user_id,
            lat=MG_ROAD[0],
            lng=MG_ROAD[1],
            recorded_at=timezone.now() - timedelta(seconds=60),
        )
        assert receipt.is_latest is False
        await location_broadcast(receipt)

        assert await communicator.receive_nothing(timeout=0.5)


async def test_riders_going_online_and_offline_reach_the_console():
    rider = await database_sync_to_async(rider_near_pickup)(
        300, status=Rider.Status.OFFLINE, seconds_ago=10
    )
    async with console(await dispatcher()) as communicator:
        await database_sync_to_async(rider_go_online)(rider=rider)
        online = await frame_of_type(communicator, "rider_status", rider_id=str(rider.pk))
        await database_sync_to_async(rider_go_offline)(rider=rider)
        offline = await frame_of_type(communicator, "rider_status", rider_id=str(rider.pk))

    assert online["status"] == "online"
    assert online["lat"] == pytest.approx(rider.last_location.y)
    assert offline["status"] == "offline"


async def test_riders_the_idle_sweep_sets_offline_leave_the_console_at_once(settings):
    # given an online rider silent for longer than the limit, and a console
    settings.RIDER_IDLE_OFFLINE_MINUTES = 10
    rider = await database_sync_to_async(rider_near_pickup)(300, seconds_ago=11 * 60)
    await database_sync_to_async(
        lambda: Rider.objects.filter(pk=rider.pk).update(
            status_changed_at=timezone.now() - timedelta(minutes=30)
        )
    )()
    async with console(await dispatcher()) as communicator:
        # when the periodic sweep runs
        assert await database_sync_to_async(set_idle_riders_offline)() == 1

        # then the console hears the rider went offline, without waiting for its snapshot
        frame = await frame_of_type(communicator, "rider_status", rider_id=str(rider.pk))

    assert frame["status"] == "offline"
    assert frame["lat"] == pytest.approx(rider.last_location.y)


async def test_order_status_changes_reach_the_console_with_the_orders_seq():
    order = await database_sync_to_async(searching_order)()
    rider = await database_sync_to_async(rider_near_pickup)(300)
    staff = await dispatcher()
    async with console(staff) as communicator:
        await database_sync_to_async(order_assign_by_staff)(
            order_id=order.pk, rider_id=rider.pk, staff=staff
        )
        first = await communicator.receive_json_from(timeout=3)
        second = await communicator.receive_json_from(timeout=3)

    # the rider's status (set under the order's lock) and then the order's, both after commit
    on_delivery, frame = first, second
    assert on_delivery["type"] == "rider_status" and frame["type"] == "order_status"
    assert frame["order_id"] == str(order.pk)

    assert frame["status"] == "rider_assigned"
    assert frame["rider_id"] == str(rider.pk)
    assert frame["seq"] == order.tracking_seq + 1
    assert frame["payment_status"] == "none"
    assert on_delivery["status"] == "on_delivery"


ORDER_ID = "0c1f7a52-8d3e-4b6a-9f21-5e4d3c2b1a09"


async def test_an_alert_an_event_starts_reaches_the_console():
    staff = await dispatcher()
    async with console(staff) as communicator:
        message = ops_alerts_changed_message(alert="refund_failed", order_id=ORDER_ID)
        await get_channel_layer().group_send(OPS_GROUP, message)

        frame = await communicator.receive_json_from(timeout=3)

    assert frame == {"type": "alerts_changed", "alert": "refund_failed", "order_id": ORDER_ID}
