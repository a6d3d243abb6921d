"""/ws/delivery/<order_id>/: who may watch an order, the first frame, status and location frames,
and when the server closes the socket.

Through config.asgi.application and the real (Redis) channel layer, so the origin check, the JWT
middleware, the router and the group messages are the real ones. transaction=True: the consumer
and the services work in other threads, and their frames go out after commit.
"""

import logging
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.tests.factories import UserFactory
from config.asgi import application
from core.realtime import location_broadcast, order_group
from delivery.consumers import DeliveryConsumer
from delivery.services.staff_actions import order_unassign_by_staff
from delivery.services.steps import delivery_complete, delivery_fail
from delivery.tests.communicator import WebsocketCommunicator
from orders.models import Order, OrderStatus
from orders.services import order_cancel
from orders.state import Action, Actor, order_transition
from orders.tests.factories import OrderFactory
from orders.tests.support import ops_user
from riders.models import Rider
from riders.services import rider_location_record
from riders.tests.factories import RiderFactory, access_token
from riders.tests.support import LOCATION_URL, MG_ROAD, as_user, fix

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

HEADERS = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
SEQ = 7  # a tracking seq the order already reached, so "one higher" is 8
NEAR_MG_ROAD = (12.9757, 77.6051)  # some 15 m from MG_ROAD: a plausible next fix


def dispatcher():
    user = ops_user("dispatcher")
    assert user.has_perm("orders.view_order") and user.has_perm("orders.assign_rider")
    return user


def socket(order_id, token: str | None = None, *, headers=HEADERS) -> WebsocketCommunicator:
    path = f"/ws/delivery/{order_id}/" + (f"?token={token}" if token is not None else "")
    return WebsocketCommunicator(application, path, headers=headers)


async def close_code(communicator: WebsocketCommunicator) -> int:
    """Connects; the consumer accepts and then closes with a code the app can act on."""
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    message = await communicator.receive_output(timeout=3)
    assert message["type"] == "websocket.close", message
    await communicator.disconnect()
    return message["code"]


async def next_close(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(timeout=3)
    assert message["type"] == "websocket.close", message
    return message["code"]


@asynccontextmanager
async def watching(order_id, user):
    """A connected tracking socket for `user`, with the first frame already read."""
    communicator = socket(order_id, access_token(user))
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    try:
        first = await communicator.receive_json_from(timeout=3)
        yield communicator, first
    finally:
        await communicator.disconnect()


def assigned_order(status: str = OrderStatus.RIDER_ASSIGNED) -> Order:
    """An order its rider carries, whose tracking seq is already SEQ."""
    order = OrderFactory(status=status)
    Order.objects.filter(pk=order.pk).update(tracking_seq=SEQ)
    return Order.objects.select_related("rider__user", "customer").get(pk=order.pk)


def reload(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def status_frame(order: Order) -> dict:
    """The status frame `order` as it is now should give, its time as an instant (`instant`)."""
    return {
        "type": "status",
        "order_id": str(order.pk),
        "seq": order.tracking_seq,
        "status": order.status,
        "rider_id": str(order.rider_id) if order.rider_id else None,
        "at": order.updated_at,
    }


def instant(frame: dict) -> dict:
    """The frame with its ISO 8601 `at` parsed: the same moment may carry any UTC offset."""
    return {**frame, "at": datetime.fromisoformat(frame["at"])}


def post_location(user, body: dict):
    return as_user(APIClient(), user).post(LOCATION_URL, body, format="json")


@pytest.fixture
def order() -> Order:
    return assigned_order()


# --- Who may connect --------------------------------------------------------------------------


@pytest.mark.checklist("P9.12")
async def test_without_a_token_the_socket_is_closed_4401(order):
    assert await close_code(socket(order.pk)) == 4401


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
async def test_a_bad_token_is_closed_4401(order, token):
    assert await close_code(socket(order.pk, token)) == 4401


async def test_a_tampered_or_expired_token_of_the_customer_is_closed_4401(order):
    header, payload, signature = access_token(order.customer).split(".")
    forged = "B" if signature[0] == "A" else "A"
    tampered = f"{header}.{payload}.{forged}{signature[1:]}"

    assert await close_code(socket(order.pk, tampered)) == 4401
    expired = AccessToken.for_user(order.customer)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    assert await close_code(socket(order.pk, str(expired))) == 4401


@pytest.mark.parametrize("who", ["stranger customer", "another rider", "staff without a group"])
async def test_someone_not_party_to_the_order_is_closed_4403(order, who):
    make = {
        "stranger customer": lambda: UserFactory(is_customer=True),
        "another rider": lambda: RiderFactory(status=Rider.Status.ONLINE).user,
        "staff without a group": lambda: UserFactory(is_staff=True, is_customer=False),
    }[who]
    user = await database_sync_to_async(make)()

    assert await close_code(socket(order.pk, access_token(user))) == 4403


async def test_a_rider_of_another_order_is_closed_4403(order):
    other = await database_sync_to_async(assigned_order)()

    assert await close_code(socket(order.pk, access_token(other.rider.user))) == 4403


async def test_an_order_that_does_not_exist_is_closed_4403_like_someone_elses(order):
    assert await close_code(socket(uuid.uuid4(), access_token(order.customer))) == 4403


@pytest.mark.checklist("P3.17")
async def test_a_foreign_origin_is_refused_at_the_handshake(order):
    communicator = socket(
        order.pk, access_token(order.customer), headers=[(b"origin", b"https://evil.test")]
    )

    connected, _ = await communicator.connect(timeout=3)

    assert not connected


@pytest.mark.checklist("P3.16", "P9.9", "P9.10")
@pytest.mark.parametrize("who", ["customer", "rider", "dispatcher"])
async def test_the_customer_the_rider_and_ops_get_the_current_status_first(order, who):
    make = {
        "customer": lambda: order.customer,
        "rider": lambda: order.rider.user,
        "dispatcher": dispatcher,
    }[who]
    user = await database_sync_to_async(make)()

    async with watching(order.pk, user) as (communicator, first):
        assert instant(first) == {
            "type": "status",
            "order_id": str(order.pk),
            "seq": SEQ,
            "status": "rider_assigned",
            "rider_id": str(order.rider_id),
            "at": order.updated_at,
        }
        assert await communicator.receive_nothing(timeout=0.2)


@pytest.mark.checklist("P3.18", "P9.12")
async def test_a_dispatcher_in_the_browser_watches_with_the_admin_session_and_no_token(order):
    def session_cookie() -> bytes:
        client = Client()
        client.force_login(dispatcher())
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    cookie = await database_sync_to_async(session_cookie)()
    communicator = socket(order.pk, headers=[*HEADERS, (b"cookie", cookie)])
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    try:
        first = await communicator.receive_json_from(timeout=3)
        assert (first["type"], first["seq"]) == ("status", SEQ)
    finally:
        await communicator.disconnect()


# --- Status frames -----------------------------------------------------------------------------


@pytest.mark.checklist("P9.10")
async def test_a_transition_reaches_the_customer_with_the_next_seq(order):
    async with (
        watching(order.pk, order.customer) as (customer_socket, _),
        watching(order.pk, order.rider.user) as (rider_socket, _),
    ):
        # when the rider marks arrival at the pickup
        await database_sync_to_async(order_transition)(
            order_id=order.pk, action=Action.ARRIVE_PICKUP, actor=Actor.rider(order.rider.user)
        )

        # then both sockets hear it, with the seq one higher than the first frame's
        moved = await database_sync_to_async(reload)(order)
        expected = status_frame(moved)
        assert expected["seq"] == SEQ + 1
        assert expected["status"] == "at_pickup"
        assert instant(await customer_socket.receive_json_from(timeout=3)) == expected
        assert instant(await rider_socket.receive_json_from(timeout=3)) == expected
        # and the rider, still the order's rider, stays connected
        assert await rider_socket.receive_nothing(timeout=0.3)
        assert await customer_socket.receive_nothing(timeout=0.1)


async def test_an_event_on_another_order_does_not_reach_this_one(order):
    other = await database_sync_to_async(assigned_order)()
    async with watching(order.pk, order.customer) as (communicator, _):
        await database_sync_to_async(order_transition)(
            order_id=other.pk, action=Action.ARRIVE_PICKUP, actor=Actor.rider(other.rider.user)
        )

        assert await communicator.receive_nothing(timeout=0.5)


# --- Location frames ---------------------------------------------------------------------------


async def test_a_ping_over_http_by_the_orders_rider_reaches_the_customer(order):
    async with watching(order.pk, order.customer) as (communicator, _):
        # when the rider's app posts a fix
        body = fix(MG_ROAD, seconds_ago=1)
        response = await database_sync_to_async(post_location)(order.rider.user, body)
        assert response.status_code == 202, response.content

        # then the customer sees the rider there, with the order's next seq
        frame = await communicator.receive_json_from(timeout=3)
        assert frame == {
            "type": "location",
            "order_id": str(order.pk),
            "seq": SEQ + 1,
            "lat": MG_ROAD[0],
            "lng": MG_ROAD[1],
            "at": frame["at"],
        }
        assert datetime.fromisoformat(frame["at"]) == datetime.fromisoformat(body["recorded_at"])
        assert (await database_sync_to_async(reload)(order)).tracking_seq == SEQ + 1


async def test_a_ping_over_the_rider_socket_reaches_the_customer(order):
    rider_socket = WebsocketCommunicator(
        application, f"/ws/rider/?token={access_token(order.rider.user)}", headers=HEADERS
    )
    assert (await rider_socket.connect(timeout=3))[0]
    try:
        async with watching(order.pk, order.customer) as (communicator, _):
            await rider_socket.send_json_to({"type": "location", **fix(MG_ROAD, seconds_ago=1)})
            assert (await rider_socket.receive_json_from(timeout=3))["type"] == "location_ack"

            frame = await communicator.receive_json_from(timeout=3)
            assert (frame["type"], frame["seq"]) == ("location", SEQ + 1)
            assert (frame["lat"], frame["lng"]) == MG_ROAD
    finally:
        await rider_socket.disconnect()


async def test_the_service_and_broadcast_used_directly_give_consecutive_seqs(order):
    async with watching(order.pk, order.customer) as (communicator, _):
        for number, (lat_lng, seconds_ago) in enumerate([(MG_ROAD, 5), (NEAR_MG_ROAD, 1)], start=1):
            receipt = await database_sync_to_async(rider_location_record)(
                user_id=order.rider.user_id,
                lat=lat_lng[0],
                lng=lat_lng[1],
                recorded_at=timezone.now() - timedelta(seconds=seconds_ago),
            )
            assert (receipt.order_id, receipt.seq) == (order.pk, SEQ + number)
            await location_broadcast(receipt)

            frame = await communicator.receive_json_from(timeout=3)
            assert (frame["seq"], frame["lat"], frame["lng"]) == (SEQ + number, *lat_lng)


async def test_a_ping_by_a_rider_not_carrying_the_order_does_not_reach_it(order):
    # given another rider, carrying another order
    other = await database_sync_to_async(assigned_order)()
    async with watching(order.pk, order.customer) as (communicator, _):
        # when that rider pings
        response = await database_sync_to_async(post_location)(other.rider.user, fix(MG_ROAD))
        assert response.status_code == 202, response.content

        # then this order's socket hears nothing and its seq does not move
        assert await communicator.receive_nothing(timeout=0.5)
        assert (await database_sync_to_async(reload)(order)).tracking_seq == SEQ
        # (the ping did count on the other rider's order)
        assert (await database_sync_to_async(reload)(other)).tracking_seq == SEQ + 1


async def test_a_ping_by_a_free_rider_reaches_nobody(order):
    free = await database_sync_to_async(RiderFactory)(status=Rider.Status.ONLINE)
    async with watching(order.pk, order.customer) as (communicator, _):
        response = await database_sync_to_async(post_location)(free.user, fix(MG_ROAD))
        assert response.status_code == 202, response.content

        assert await communicator.receive_nothing(timeout=0.5)


async def test_an_older_fix_arriving_late_is_not_broadcast(order):
    async with watching(order.pk, order.customer) as (communicator, _):
        # given the rider's latest fix, heard by the customer
        newer = fix(MG_ROAD, seconds_ago=2)
        assert (await database_sync_to_async(post_location)(order.rider.user, newer)).json()[
            "latest"
        ] is True
        assert (await communicator.receive_json_from(timeout=3))["seq"] == SEQ + 1

        # when a fix taken before it arrives late
        older = fix(NEAR_MG_ROAD, seconds_ago=20)
        response = await database_sync_to_async(post_location)(order.rider.user, older)

        # then it is stored for the trail only: nobody is told, the seq does not move
        assert response.status_code == 202, response.content
        assert response.json()["latest"] is False
        assert await communicator.receive_nothing(timeout=0.5)
        assert (await database_sync_to_async(reload)(order)).tracking_seq == SEQ + 1


# --- When the server closes --------------------------------------------------------------------


async def test_a_rider_unassigned_by_staff_gets_the_status_and_is_closed_4403(order):
    staff = await database_sync_to_async(dispatcher)()
    async with (
        watching(order.pk, order.rider.user) as (rider_socket, _),
        watching(order.pk, order.customer) as (customer_socket, _),
    ):
        # when ops take the order back from the rider
        await database_sync_to_async(order_unassign_by_staff)(order_id=order.pk, staff=staff)

        # then the rider hears the order is searching again, without them, and is closed 4403
        released = await database_sync_to_async(reload)(order)
        frame = await rider_socket.receive_json_from(timeout=3)
        assert instant(frame) == status_frame(released)
        assert (frame["status"], frame["rider_id"], frame["seq"]) == (
            "searching_rider",
            None,
            SEQ + 1,
        )
        assert await next_close(rider_socket) == 4403

        # while the customer hears the same and keeps watching
        assert await customer_socket.receive_json_from(timeout=3) == frame
        assert await customer_socket.receive_nothing(timeout=0.3)

    # and the rider can no longer open the order's socket
    assert await close_code(socket(order.pk, access_token(order.rider.user))) == 4403


def _deliver(order: Order) -> None:
    delivery_complete(order_id=order.pk, rider=order.rider, delivery_code="4321")


def _cancel(order: Order) -> None:
    order_cancel(order_id=order.pk, actor=Actor.customer(order.customer), reason="changed my mind")


def _fail(order: Order) -> None:
    delivery_fail(order_id=order.pk, rider=order.rider, reason="nobody at the door")


@pytest.mark.parametrize(
    ("status", "end", "final"),
    [
        (OrderStatus.AT_DROPOFF, _deliver, "delivered"),
        (OrderStatus.RIDER_ASSIGNED, _cancel, "cancelled"),
        (OrderStatus.PICKED_UP, _fail, "failed"),
    ],
)
async def test_everyone_is_closed_1000_once_the_order_has_ended(status, end, final):
    order = await database_sync_to_async(assigned_order)(status)
    staff = await database_sync_to_async(dispatcher)()
    async with (
        watching(order.pk, order.customer) as (customer_socket, _),
        watching(order.pk, order.rider.user) as (rider_socket, _),
        watching(order.pk, staff) as (ops_socket, _),
    ):
        await database_sync_to_async(end)(order)

        ended = await database_sync_to_async(reload)(order)
        assert (ended.status, ended.tracking_seq) == (final, SEQ + 1)
        for communicator in (customer_socket, rider_socket, ops_socket):
            frame = await communicator.receive_json_from(timeout=3)
            assert instant(frame) == status_frame(ended)
            assert await next_close(communicator) == 1000


async def test_what_is_on_its_way_after_the_final_status_is_not_sent_after_the_close():
    # uvicorn refuses a frame or a second close after the server's close (RuntimeError, an
    # error in the log): the proof load test saw both just after an order's final status
    order = await database_sync_to_async(assigned_order)(OrderStatus.AT_DROPOFF)
    async with watching(order.pk, order.customer) as (socket, _):
        await database_sync_to_async(_deliver)(order)
        await socket.receive_json_from(timeout=3)
        assert await next_close(socket) == 1000

        layer = get_channel_layer()
        await layer.group_send(
            order_group(order.pk),
            {"type": "location", "order_id": str(order.pk), "seq": SEQ + 2, "lat": 1, "lng": 2},
        )
        ended = await database_sync_to_async(reload)(order)
        await layer.group_send(
            order_group(order.pk), {**status_frame(ended), "at": ended.updated_at.isoformat()}
        )

        assert await socket.receive_nothing(timeout=0.5)


@pytest.mark.parametrize("final", ["delivered", "cancelled", "failed"])
async def test_a_socket_opened_on_an_ended_order_gets_the_final_status_and_is_closed_1000(final):
    order = await database_sync_to_async(assigned_order)(final)

    async with watching(order.pk, order.customer) as (communicator, first):
        assert instant(first) == status_frame(await database_sync_to_async(reload)(order))
        assert first["status"] == final
        assert await next_close(communicator) == 1000


async def test_frames_from_the_client_get_a_read_only_error_and_the_socket_stays_open(order):
    async with watching(order.pk, order.customer) as (communicator, _):
        await communicator.send_to(text_data='{"type": "cancel"}')
        reply = await communicator.receive_json_from(timeout=3)
        assert (reply["type"], reply["code"]) == ("error", "read_only")
        assert reply["message"]

        await communicator.send_to(text_data="not json")
        assert (await communicator.receive_json_from(timeout=3))["code"] == "read_only"

        # and the order's events still arrive
        await database_sync_to_async(order_transition)(
            order_id=order.pk, action=Action.ARRIVE_PICKUP, actor=Actor.rider(order.rider.user)
        )
        assert (await communicator.receive_json_from(timeout=3))["seq"] == SEQ + 1


@pytest.fixture
def every_log_line(caplog):
    """caplog, also fed by the loggers that do not propagate to the root (django, celery)."""
    caplog.set_level("DEBUG")
    loggers = [logging.getLogger(name) for name in ("django", "celery", "django_guid")]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    yield caplog
    for logger in loggers:
        logger.removeHandler(caplog.handler)


async def test_the_token_never_reaches_the_log(order, every_log_line):
    caplog = every_log_line
    token = access_token(order.customer)
    stranger = await database_sync_to_async(UserFactory)(is_customer=True)
    stranger_token = access_token(stranger)

    async with watching(order.pk, order.customer) as (communicator, _):
        await communicator.send_to(text_data="hello")
        await communicator.receive_json_from(timeout=3)
    assert await close_code(socket(order.pk, stranger_token)) == 4403
    assert await close_code(socket(order.pk, token + "tampered")) == 4401
    assert await close_code(socket(uuid.uuid4(), token)) == 4403

    assert f"order {order.pk} watched by user {order.customer.pk}" in caplog.text
    assert "WebSocket token refused" in caplog.text  # the tampered one was logged, without it
    for secret in (token, stranger_token):
        assert secret not in caplog.text
        assert secret.split(".")[2] not in caplog.text  # nor the signature on its own


@pytest.mark.parametrize("who", ["dispatcher", "customer"])
async def test_a_watcher_whose_rights_are_taken_away_stops_watching(order, who, monkeypatch):
    # given a watcher whose rights are read again at every frame
    monkeypatch.setattr(DeliveryConsumer, "recheck_seconds", 0.0)
    user = await database_sync_to_async(dispatcher)() if who == "dispatcher" else order.customer
    async with watching(order.pk, user) as (communicator, first):
        assert first["type"] == "status"

        # when ops take the dispatcher's group away, or disable the customer's account, and
        # the rider moves
        if who == "dispatcher":
            await database_sync_to_async(user.groups.clear)()
        else:
            await database_sync_to_async(User.objects.filter(pk=user.pk).update)(is_active=False)
        await get_channel_layer().group_send(
            order_group(order.pk),
            {"type": "location", "order_id": str(order.pk), "seq": SEQ + 1, "lat": 12.97},
        )

        # then the socket closes with 4403 instead of relaying it
        closed = await communicator.receive_output(timeout=3)

    assert closed == {"type": "websocket.close", "code": 4403}
