"""/ws/rider/: who may connect, location frames, bad frames, and offers relayed to the app.

Through config.asgi.application, so the origin check, the JWT middleware and the router are
the real ones. transaction=True: the consumer reads and writes from other threads.
"""

import asyncio
import json
import time
from datetime import datetime, timedelta

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.tests.factories import UserFactory
from config.asgi import application
from core.realtime import rider_group
from core.tests.asyncapi import example_frame
from delivery.consumers import MAX_FRAME_BYTES
from delivery.tests.communicator import WebsocketCommunicator
from riders.models import Rider, RiderLocation
from riders.tests.factories import RiderFactory, RiderUserFactory, access_token
from riders.tests.support import MG_ROAD, fix

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

HEADERS = [(b"origin", b"http://testserver"), (b"host", b"testserver")]


def socket(token: str | None = None, *, headers=HEADERS) -> WebsocketCommunicator:
    path = "/ws/rider/" + (f"?token={token}" if token is not None else "")
    return WebsocketCommunicator(application, path, headers=headers)


async def close_code(communicator: WebsocketCommunicator) -> int:
    """Connects; the consumer accepts and then closes with a code the app can act on."""
    connected, _ = await communicator.connect()
    assert connected
    message = await communicator.receive_output(timeout=3)
    assert message["type"] == "websocket.close", message
    await communicator.wait()
    return message["code"]


@pytest.fixture
def rider() -> Rider:
    return RiderFactory()


@pytest_asyncio.fixture
async def rider_socket(rider):
    communicator = socket(access_token(rider.user))
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    yield communicator
    await communicator.disconnect()


async def test_without_a_token_the_socket_is_closed_4401():
    assert await close_code(socket()) == 4401


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
async def test_a_bad_token_is_closed_4401(token):
    assert await close_code(socket(token)) == 4401


async def test_an_expired_or_refresh_token_or_disabled_account_is_closed_4401():
    user = await database_sync_to_async(RiderUserFactory)()
    expired = AccessToken.for_user(user)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    refresh = await database_sync_to_async(RefreshToken.for_user)(user)  # records it: a query

    assert await close_code(socket(str(expired))) == 4401
    assert await close_code(socket(str(refresh))) == 4401

    disabled = await database_sync_to_async(RiderUserFactory)(is_active=False)
    assert await close_code(socket(access_token(disabled))) == 4401


async def test_a_customer_is_closed_4403():
    customer = await database_sync_to_async(UserFactory)(is_customer=True)

    assert await close_code(socket(access_token(customer))) == 4403


@pytest.mark.checklist("P3.17")
async def test_a_foreign_origin_is_refused_at_the_handshake(rider):
    communicator = socket(access_token(rider.user), headers=[(b"origin", b"https://evil.test")])

    connected, _ = await communicator.connect()

    assert not connected


@pytest.mark.checklist("P3.17")
async def test_a_native_app_without_an_origin_header_is_let_in(rider):
    # given a mobile client: no Origin header, only its JWT
    communicator = socket(access_token(rider.user), headers=[(b"host", b"testserver")])

    # when
    connected, _ = await communicator.connect(timeout=3)

    # then the token decides, not the missing Origin
    assert connected
    await communicator.disconnect()


async def test_without_an_origin_a_missing_token_is_still_closed_4401():
    assert await close_code(socket(headers=[(b"host", b"testserver")])) == 4401


@pytest.mark.checklist("P3.16")
async def test_a_rider_is_accepted_and_gets_a_profile_on_first_connect():
    user = await database_sync_to_async(RiderUserFactory)()
    communicator = socket(access_token(user))

    connected, _ = await communicator.connect(timeout=3)

    assert connected
    assert await communicator.receive_nothing(timeout=0.2)
    assert await database_sync_to_async(Rider.objects.filter(user=user, approved=False).exists)()
    await communicator.disconnect()


async def test_a_location_frame_is_stored_and_acknowledged(rider, rider_socket):
    # when
    body = fix(MG_ROAD, seconds_ago=2)
    await rider_socket.send_json_to({"type": "location", **body})
    reply = await rider_socket.receive_json_from(timeout=3)

    # then
    assert reply == {"type": "location_ack", "recorded_at": reply["recorded_at"], "latest": True}
    stored = await database_sync_to_async(Rider.objects.get)(pk=rider.pk)
    assert (round(stored.last_location.y, 6), round(stored.last_location.x, 6)) == MG_ROAD
    assert stored.last_location_at == datetime.fromisoformat(body["recorded_at"])
    assert await database_sync_to_async(RiderLocation.objects.filter(rider=rider).count)() == 1


@pytest.mark.parametrize(
    ("seconds_ago", "changes", "code"),
    [
        (3600, {}, "location_stale"),
        (-3600, {}, "location_from_future"),
        (0, {"lat": 91}, "invalid"),
    ],
)
async def test_a_refused_location_gets_the_same_error_code_as_over_http(
    rider, rider_socket, seconds_ago, changes, code
):
    await rider_socket.send_json_to({"type": "location", **fix(seconds_ago=seconds_ago), **changes})

    reply = await rider_socket.receive_json_from(timeout=3)

    assert reply["type"] == "error"
    assert reply["code"] == code
    assert reply["message"]
    if code == "invalid":
        assert list(reply["fields"]) == ["lat"]
    assert not await database_sync_to_async(RiderLocation.objects.exists)()


async def test_an_impossible_jump_is_refused_over_the_socket(rider, rider_socket):
    await rider_socket.send_json_to({"type": "location", **fix(MG_ROAD, seconds_ago=10)})
    assert (await rider_socket.receive_json_from(timeout=3))["type"] == "location_ack"

    await rider_socket.send_json_to({"type": "location", **fix((13.2, 77.6))})  # 25 km in 10 s

    reply = await rider_socket.receive_json_from(timeout=3)
    assert reply["code"] == "location_impossible_speed"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json at all", "invalid_json"),
        ("[1, 2, 3]", "invalid_frame"),
        ('{"lat": 12.9}', "invalid_frame"),
        ('{"type": "teleport"}', "unknown_type"),
        (json.dumps({"type": "location", "pad": "x" * MAX_FRAME_BYTES}), "frame_too_large"),
    ],
)
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_usable(
    rider, rider_socket, frame, code
):
    # when a bad frame arrives
    await rider_socket.send_to(text_data=frame)

    # then it is answered with an error frame
    reply = await rider_socket.receive_json_from(timeout=3)
    assert (reply["type"], reply["code"]) == ("error", code)

    # and the next good frame still works
    await rider_socket.send_json_to({"type": "location", **fix()})
    assert (await rider_socket.receive_json_from(timeout=3))["type"] == "location_ack"


async def test_a_binary_frame_gets_an_error_frame(rider_socket):
    await rider_socket.send_to(bytes_data=b"\x00\x01")

    reply = await rider_socket.receive_json_from(timeout=3)

    assert (reply["type"], reply["code"]) == ("error", "unsupported_frame")


async def test_an_offer_sent_to_the_riders_group_reaches_only_that_rider(rider, rider_socket):
    # given another rider, also connected
    other = await database_sync_to_async(RiderFactory)()
    other_socket = socket(access_token(other.user))
    assert (await other_socket.connect(timeout=3))[0]

    # when dispatch sends an offer to the first rider's group
    offer = example_frame("rider", "offer")
    await get_channel_layer().group_send(f"rider.{rider.pk}", offer)
    withdrawn = example_frame("rider", "offerWithdrawn", offer_id=offer["offer_id"])
    await get_channel_layer().group_send(f"rider.{rider.pk}", withdrawn)

    # then that rider's app gets both, and the other rider's gets nothing
    assert await rider_socket.receive_json_from(timeout=3) == offer
    assert await rider_socket.receive_json_from(timeout=3) == withdrawn
    assert await other_socket.receive_nothing(timeout=0.3)
    await other_socket.disconnect()


async def test_the_token_never_reaches_the_log(rider, caplog):
    caplog.set_level("DEBUG")
    token = access_token(rider.user)
    communicator = socket(token)
    assert (await communicator.connect(timeout=3))[0]
    await communicator.send_json_to({"type": "location", **fix()})
    await communicator.receive_json_from(timeout=3)
    await communicator.disconnect()
    assert await close_code(socket(token + "tampered")) == 4401

    assert "rider" in caplog.text  # the consumer did log its connection
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text  # nor the signature on its own


async def test_a_busy_shared_sync_thread_holds_up_neither_pings_nor_new_sockets(rider):
    """asgiref runs every thread-sensitive call of a process outside a request (sockets have
    none) in one shared thread; a slow one there (an admin action, a management call) must not
    stall every socket of the worker behind it."""
    # given the shared thread busy for 5 s
    busy = asyncio.ensure_future(sync_to_async(time.sleep)(5))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    try:
        # when a rider connects and pings
        communicator = socket(access_token(rider.user))
        connected, _ = await communicator.connect(timeout=3)
        assert connected
        await communicator.send_json_to({"type": "location", **fix(MG_ROAD, seconds_ago=1)})
        reply = await communicator.receive_json_from(timeout=3)
        waited = time.monotonic() - started
        await communicator.disconnect()
    finally:
        await busy

    # then the socket opened and the ping was stored and acknowledged meanwhile
    assert reply["type"] == "location_ack", reply
    assert waited < 4, f"the rider waited {waited:.1f} s for the busy thread"


async def test_a_riders_new_socket_closes_the_older_one_4409_and_takes_the_offers(rider):
    # given a rider's socket
    first = socket(access_token(rider.user))
    assert (await first.connect(timeout=3))[0]

    # when the same rider opens another (a second phone, or a reconnect the first missed)
    second = socket(access_token(rider.user))
    assert (await second.connect(timeout=3))[0]

    # then the older one is closed with 4409, and the rider's messages reach the new one only
    closed = await first.receive_output(timeout=3)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4409), closed
    await get_channel_layer().group_send(rider_group(rider.pk), example_frame("rider", "offer"))
    frame = json.loads(await second.receive_from(timeout=3))
    assert frame["type"] == "offer"
    await second.disconnect()
