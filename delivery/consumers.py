"""WebSocket consumers: the rider app's socket (/ws/rider/), an order's tracking socket
(/ws/delivery/<order_id>/) and the ops console's live feed (/ws/ops/).

Consumers translate frames to service calls and back, nothing more. Close codes: 4401 no or
bad token, 4403 signed in but not allowed, 4409 replaced by the rider's newer socket, 4429 too
many sockets open for the user. They are sent after accepting the handshake: a
socket refused during the handshake reaches the client as a bare HTTP 403, with no code to
tell "sign in again" from "not for you".
"""

import json
import logging
import time

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from prometheus_client import Gauge
from rest_framework.exceptions import ValidationError

from accounts.models import User
from core import realtime
from core.db import database_call
from core.exceptions import DEPENDENCY_ERRORS, UNAVAILABLE, ApiError
from core.realtime import order_group, rider_group
from delivery.selectors import order_for_watcher
from delivery.socket_quota import socket_check_in, socket_check_out, socket_still_open
from orders.models import TERMINAL_STATUSES, Order
from riders.services import rider_id_get_or_create, rider_location_ping

logger = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_REPLACED = 4409  # the rider opened another socket: one live socket per rider
CLOSE_TOO_MANY = 4429  # the user has WS_MAX_SOCKETS_PER_USER tracking and ops sockets open
MAX_FRAME_BYTES = 4096

SOCKETS_OPEN = Gauge(
    "websocket_connections_open",
    "WebSockets accepted and not yet closed, by consumer (rider, delivery tracking, ops).",
    ["consumer"],
    multiprocess_mode="livesum",
)


class FrameError(Exception):
    def __init__(self, code: str, message: str, fields: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields


class Consumer(AsyncWebsocketConsumer):
    """The base of the project's consumers: channels' AsyncConsumer.dispatch, without the
    `aclose_old_connections()` it awaits before every message.

    That call is a thread-sensitive sync_to_async, and a socket has no request context, so it
    runs in the one thread asgiref keeps per process for such calls: every frame and every group
    message of every socket of a worker queued there, behind each other and behind any slow
    thread-sensitive call. These consumers reach the database only through core.db.database_call
    (database_sync_to_async), which closes old connections itself before and after each call,
    so the per-message cleanup does nothing for them.
    """

    # Whether SOCKETS_OPEN counts this socket: from its accept to its disconnect.
    counted_open = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        SOCKETS_OPEN.labels(cls.__name__)  # shown as 0 before the first socket

    async def accept(self, subprotocol=None, headers=None):
        await super().accept(subprotocol=subprotocol, headers=headers)
        if not self.counted_open:
            self.counted_open = True
            SOCKETS_OPEN.labels(type(self).__name__).inc()

    async def websocket_disconnect(self, message):
        try:
            await super().websocket_disconnect(message)
        finally:
            if self.counted_open:
                self.counted_open = False
                SOCKETS_OPEN.labels(type(self).__name__).dec()

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # Once the consumer has closed its socket, a group message already on its way (a location
    # or another status right after the final status) sends nothing, not even a second close:
    # the server refuses either after its close (uvicorn raises, an error in the log), and the
    # client re-reads the snapshot if it comes back.
    closed_by_server = False

    async def close(self, code=None, reason=None):
        if self.closed_by_server:
            return
        self.closed_by_server = True
        await super().close(code=code, reason=reason)

    async def send(self, text_data=None, bytes_data=None, close=False):
        if self.closed_by_server:
            return
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)


class CountedConsumer(Consumer):
    """A socket counted against its user's cap (delivery.socket_quota): past it, the handshake
    is accepted and closed with 4429. The rider's socket is not counted: a new one replaces the
    rider's older one."""

    counted_user_id = None

    async def check_in(self, user) -> bool:
        counted = await sync_to_async(socket_check_in, thread_sensitive=False)(
            user_id=user.pk, channel_name=self.channel_name
        )
        if not counted:
            logger.warning("user %s refused a socket: too many open", user.pk)
            await self.close(code=CLOSE_TOO_MANY)
            return False
        self.counted_user_id = user.pk
        return True

    async def still_open(self) -> None:
        await sync_to_async(socket_still_open, thread_sensitive=False)(
            user_id=self.counted_user_id, channel_name=self.channel_name
        )

    async def disconnect(self, code):
        if self.counted_user_id is not None:
            await sync_to_async(socket_check_out, thread_sensitive=False)(
                user_id=self.counted_user_id, channel_name=self.channel_name
            )


class RiderConsumer(Consumer):
    """Client sends {"type": "location", ...}; server sends offers and error frames.

    A bad frame (not JSON, over 4 KB, binary, unknown type, invalid fields, a refused fix) is
    answered with {"type": "error", "code", "message"[, "fields"]} and the socket stays open.
    One live socket per rider: a new one closes the rider's older ones with 4409 (another phone,
    or a connection the app gave up on), so offers go to one app and one app sends fixes.
    """

    rider_id = None
    connected_at = 0.0

    async def connect(self):
        user = await accept_signed_in(self)
        if user is None:
            return
        if not user.is_rider:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.rider_id = await database_call(rider_id_get_or_create)(user=user)
        group = rider_group(self.rider_id)
        self.connected_at = time.time()
        await self.channel_layer.group_add(group, self.channel_name)
        await self.channel_layer.group_send(
            group, {"type": "socket.replaced", "by": self.channel_name, "at": self.connected_at}
        )
        logger.info("rider %s connected", self.rider_id)  # never the scope: its query has a token

    async def disconnect(self, code):
        if self.rider_id is not None:
            await self.channel_layer.group_discard(rider_group(self.rider_id), self.channel_name)
            logger.info("rider %s disconnected (%s)", self.rider_id, code)

    async def receive(self, text_data=None, bytes_data=None):
        if self.rider_id is None:
            return  # a frame that raced the close of a refused connection
        try:
            frame = _parse_frame(text_data, bytes_data)
            if frame["type"] == "location":
                reply = await self._location(frame)
            else:
                raise FrameError("unknown_type", f"Unknown frame type {frame['type']!r}.")
        except FrameError as error:
            reply = {"type": "error", "code": error.code, "message": error.message}
            if error.fields:
                reply["fields"] = error.fields
        await self.send(text_data=json.dumps(reply))

    async def _location(self, frame: dict) -> dict:
        try:
            answer = await rider_location_ping(
                user_id=self.scope["user"].pk,
                data={key: value for key, value in frame.items() if key != "type"},
            )
        except ValidationError as error:
            raise FrameError("invalid", "Invalid location.", _plain(error.detail)) from None
        except ApiError as error:
            raise FrameError(error.code, error.message) from None
        except DEPENDENCY_ERRORS as error:
            logger.error("rider location not stored: %s: %s", type(error).__name__, error)
            raise FrameError(UNAVAILABLE.code, UNAVAILABLE.message) from None
        return {"type": "location_ack", **answer}

    async def socket_replaced(self, event):
        # By time, not by arrival: an older socket's announcement may arrive after a newer
        # one has joined the group (connect answers before the announcement is sent).
        if event["by"] != self.channel_name and event["at"] > self.connected_at:
            logger.info("rider %s: an older socket closed, a newer one took over", self.rider_id)
            await self.close(code=CLOSE_REPLACED)

    # Group messages from dispatch, relayed to the app as they are.

    async def offer(self, event):
        await self.send(text_data=json.dumps(event))

    async def offer_withdrawn(self, event):
        await self.send(text_data=json.dumps(event))

    async def assigned(self, event):
        await self.send(text_data=json.dumps(event))

    async def unassigned(self, event):
        await self.send(text_data=json.dumps(event))


class DeliveryConsumer(CountedConsumer):
    """An order's live status and its rider's position, for its customer, its rider and ops.

    Server-to-client only: {"type": "status", "seq", "status", ...} and
    {"type": "location", "seq", "lat", "lng", "at"}. The first frame after connecting is the
    current status with the current seq. A rider who is unassigned from the order hears the
    status change and is then closed with 4403; everyone is closed with 1000 once the order has
    ended (at once, after that first frame, on an order that ended before). The watcher's rights
    are read again every `recheck_seconds` (on the next frame after): someone whose account is
    disabled, or staff whose group is taken away, stop watching within about a minute (4403).
    """

    order_id = None
    watching_as_rider_id = None
    recheck_seconds = 60.0
    checked_at = 0.0

    async def connect(self):
        user = await accept_signed_in(self)
        if user is None or not await self.check_in(user):
            return
        order = await database_call(order_for_watcher)(
            user=user, order_id=self.scope["url_route"]["kwargs"]["order_id"]
        )
        if order is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.order_id = order.pk
        self.checked_at = time.monotonic()
        if order.rider is not None and order.rider.user_id == user.pk:
            self.watching_as_rider_id = str(order.rider_id)
        await self.channel_layer.group_add(order_group(self.order_id), self.channel_name)
        # After joining: an event between the read and the join would otherwise be lost. The
        # first frame may repeat a seq already sent; clients keep the highest.
        current = await database_call(_current_status)(self.order_id)
        await self.send(text_data=json.dumps(current))
        logger.info("order %s watched by user %s", self.order_id, user.pk)
        if current["status"] in TERMINAL_STATUSES:
            await self.close(code=CLOSE_NORMAL)  # it ended before this socket opened

    async def disconnect(self, code):
        if self.order_id is not None:
            await self.channel_layer.group_discard(order_group(self.order_id), self.channel_name)
        await super().disconnect(code)

    async def receive(self, text_data=None, bytes_data=None):
        if self.order_id is None:
            return
        await self.send(text_data=read_only_answer("use the REST API to act on the order"))

    async def _still_allowed(self) -> bool:
        """False, once the socket is closed, when the watcher may no longer watch."""
        if time.monotonic() - self.checked_at < self.recheck_seconds:
            return True
        self.checked_at = time.monotonic()
        user_id = self.scope["user"].pk
        if await database_call(_watcher_still_allowed)(user_id, self.order_id):
            await self.still_open()
            return True
        await self.channel_layer.group_discard(order_group(self.order_id), self.channel_name)
        self.order_id = None
        await self.close(code=CLOSE_FORBIDDEN)
        return False

    async def status(self, event):
        if self.order_id is None or not await self._still_allowed():
            return
        await self.send(text_data=json.dumps(event))
        if self.watching_as_rider_id is not None and event["rider_id"] != self.watching_as_rider_id:
            await self.close(code=CLOSE_FORBIDDEN)  # the order is no longer this rider's
        elif event["status"] in TERMINAL_STATUSES:
            await self.close(code=CLOSE_NORMAL)  # nothing more will happen to this order

    async def location(self, event):
        if self.order_id is None or not await self._still_allowed():
            return
        await self.send(text_data=json.dumps(event))


def _watcher_still_allowed(user_id, order_id) -> bool:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    return user is not None and order_for_watcher(user=user, order_id=order_id) is not None


def _current_status(order_id) -> dict:
    order = Order.objects.get(pk=order_id)
    return realtime.status_message(
        order_id=order.pk,
        seq=order.tracking_seq,
        status=order.status,
        rider_id=order.rider_id,
        at=order.updated_at,
    )


async def accept_signed_in(consumer: Consumer):
    """Accepts the handshake (so a close code can reach the client) and returns the signed-in
    user, or closes with 4401 and returns None."""
    await consumer.accept()
    user = consumer.scope.get("user")
    if user is None or not user.is_authenticated:
        await consumer.close(code=CLOSE_UNAUTHENTICATED)
        return None
    return user


def read_only_answer(how_to_act: str) -> str:
    """The answer of a socket that only sends, to a client that sent it something."""
    message = f"This socket only sends; {how_to_act}."
    return json.dumps({"type": "error", "code": "read_only", "message": message})


def _parse_frame(text_data: str | None, bytes_data: bytes | None) -> dict:
    if text_data is None:
        raise FrameError("unsupported_frame", "Send JSON text frames, not binary ones.")
    if len(text_data) > MAX_FRAME_BYTES or len(text_data.encode()) > MAX_FRAME_BYTES:
        raise FrameError("frame_too_large", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
    try:
        frame = json.loads(text_data)
    except (ValueError, RecursionError):  # RecursionError: nested thousands of levels deep
        raise FrameError("invalid_json", "The frame is not valid JSON.") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameError("invalid_frame", 'A frame is a JSON object with a "type".')
    return frame


def _plain(detail) -> dict:
    return {field: [str(message) for message in messages] for field, messages in detail.items()}
