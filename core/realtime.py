"""What goes out over the WebSockets, and to which group.

Groups: `rider.<rider id>` (every socket of one rider: offers, assignments),
`order.<order id>` (the order's customer, its rider and staff: status and location events) and
`ops` (the ops console's sockets: every rider's moves and status, every order's status).
Each order event carries the order's `seq` (Order.tracking_seq), one higher than the last, so a
client that sees a gap knows to re-read the REST snapshot. Messages go out only after the
change is committed, carry the minimum personal data, and are best effort: a channel layer
(Redis) that is down is logged and never undoes a committed change.
"""

import asyncio
import logging
import os
import weakref

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)


def rider_group(rider_id) -> str:
    return f"rider.{rider_id}"


def order_group(order_id) -> str:
    return f"order.{order_id}"


# Every ops console socket. A send to it with no console open costs one Redis round trip.
OPS_GROUP = "ops"
# Rider moves reach the ops consoles in one message per web worker per this many seconds
# (OpsMoves), not one per ping.
OPS_MOVES_SECONDS = 1.0


def status_message(*, order_id, seq: int, status: str, rider_id, at) -> dict:
    """An order changed status. `rider_id` lets a rider's socket notice it was unassigned."""
    return {
        "type": "status",
        "order_id": str(order_id),
        "seq": seq,
        "status": status,
        "rider_id": str(rider_id) if rider_id else None,
        "at": _time(at),
    }


def location_message(*, order_id, seq: int, lat: float, lng: float, at) -> dict:
    """The order's rider moved."""
    return {
        "type": "location",
        "order_id": str(order_id),
        "seq": seq,
        "lat": lat,
        "lng": lng,
        "at": _time(at),
    }


# Messages for the ops group: ids, statuses and positions only. The console reads names,
# addresses and the rest from its snapshot (ops.selectors), and re-reads it for what it lacks.


def ops_rider_move(*, rider_id, lat: float, lng: float, at) -> dict:
    """One rider's new position, as listed in an "ops.riders_moved" message."""
    return {"rider_id": str(rider_id), "lat": lat, "lng": lng, "at": _time(at)}


def ops_riders_moved_message(moves: list[dict]) -> dict:
    return {"type": "ops.riders_moved", "riders": moves}


def ops_rider_status_message(rider) -> dict:
    """A rider's new status, with the position the row already holds (no query)."""
    point = rider.last_location
    return {
        "type": "ops.rider_status",
        "rider_id": str(rider.pk),
        "status": rider.status,
        "lat": point.y if point is not None else None,
        "lng": point.x if point is not None else None,
        "at": _time(rider.last_location_at) if rider.last_location_at else None,
    }


def ops_order_status_message(order) -> dict:
    """An order's new status, numbered by its tracking seq like the order's own sockets."""
    return {
        "type": "ops.order_status",
        "order_id": str(order.pk),
        "seq": order.tracking_seq,
        "status": order.status,
        "payment_status": order.payment_status,
        "rider_id": str(order.rider_id) if order.rider_id else None,
        "at": _time(order.updated_at),
    }


def ops_alerts_changed_message(*, alert: str, order_id) -> dict:
    """An alert that starts with an event, not with time passing (a refund failed): the
    consoles re-read their snapshot for it rather than wait for the next periodic read."""
    return {"type": "ops.alerts_changed", "alert": alert, "order_id": str(order_id)}


def _time(moment) -> str:
    """ISO 8601 in the service's time zone, as the REST API renders times."""
    return timezone.localtime(moment).isoformat()


def send(group: str, message: dict) -> None:
    """Sends from synchronous code (services, tasks); call it from transaction.on_commit."""
    send_many([(group, message)])


def send_many(messages: list[tuple[str, dict]]) -> None:
    """Sends each (group, message) in order, in one trip to the event loop.

    Under ASGI a sync view runs in a worker thread, and the worker's event loop does the
    sending. The thread hands the messages over and goes on without waiting for the loop's
    turn: in the city soak, offer accept and order cancel spent 40 % and 28 % of their time
    waiting there (py-spy, every thread). A process of one send after another (later ones wait
    for earlier ones) keeps their order; the worker sends what is left before it exits
    (config.workers). Without a worker's loop (a Celery task, a command, a test's client) it
    sends and waits, as before.
    """
    if not messages:
        return
    loop = _serving_loop()
    if loop is None:
        async_to_sync(_send_each)(messages)
        return
    try:
        loop.call_soon_threadsafe(_outbox.hand_over, loop, list(messages))
    except RuntimeError:  # the loop closed meanwhile (the worker is stopping)
        async_to_sync(_send_each)(messages)


def _serving_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of the ASGI worker this sync thread serves a request for (asgiref keeps
    it for async_to_sync), or None."""
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    return loop if loop is not None and loop.is_running() else None


# Messages that waited longer for the channel layer (its Redis down or hung: each send then
# takes REDIS_SOCKET_TIMEOUT) are dropped, not sent late: their news is stale, and a client
# re-reads the snapshot when `seq` jumps.
OUTBOX_MAX_WAIT_SECONDS = 30.0


class Outbox:
    """Messages handed over by request threads, sent by their event loop in the order handed
    over: each send is a task that first waits for the one before it. Only the loop's own
    thread touches it (hand_over runs through call_soon_threadsafe)."""

    def __init__(self) -> None:
        self.last: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> task
        self.pending: set[asyncio.Task] = set()  # the loop holds tasks weakly

    def hand_over(self, loop: asyncio.AbstractEventLoop, messages) -> None:
        task = loop.create_task(self._send_after(self.last.get(loop), messages, loop.time()))
        self.last[loop] = task
        self.pending.add(task)
        task.add_done_callback(lambda done: self._sent(loop, done))

    def _sent(self, loop, task: asyncio.Task) -> None:
        self.pending.discard(task)
        if self.last.get(loop) is task:
            del self.last[loop]

    @staticmethod
    async def _send_after(previous: asyncio.Task | None, messages, handed_at: float) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        waited = asyncio.get_running_loop().time() - handed_at
        if waited > OUTBOX_MAX_WAIT_SECONDS:
            logger.warning(
                "dropped %d realtime message(s) that waited %.0f s for the channel layer",
                len(messages),
                waited,
            )
            return
        await _send_each(messages)

    async def flush(self, timeout: float) -> None:
        """Waits (at most `timeout` s) for the sends this loop still has to make."""
        loop = asyncio.get_running_loop()
        mine = [task for task in list(self.pending) if task.get_loop() is loop]
        if mine:
            await asyncio.wait(mine, timeout=timeout)


_outbox = Outbox()


async def flush(timeout: float = 5.0) -> None:
    """Sends what this event loop's request threads handed over and it has not sent yet."""
    await _outbox.flush(timeout)


async def _send_each(messages: list[tuple[str, dict]]) -> None:
    layer = get_channel_layer()
    for group, message in messages:
        try:
            await layer.group_send(group, message)
        except Exception:  # the channel layer down must not undo or fail a committed change
            logger.exception("could not send %s to %s", message.get("type"), group)


async def send_async(group: str, message: dict) -> None:
    """The same from async code (the location view and the rider socket)."""
    try:
        await get_channel_layer().group_send(group, message)
    except Exception:
        logger.exception("could not send %s to %s", message.get("type"), group)


def send_on_commit(group: str, message: dict) -> None:
    send_many_on_commit([(group, message)])


def send_many_on_commit(messages: list[tuple[str, dict]]) -> None:
    """send_many once the transaction commits; dropped with it (or its savepoint) on rollback."""
    messages = list(messages)
    transaction.on_commit(lambda: send_many(messages))


class OpsMoves:
    """Rider moves for the ops consoles, gathered in this process and sent together.

    A console cannot draw thousands of messages a second, and a send per ping costs a Redis
    round trip even with no console open. So a move after a quiet spell goes out at once, and
    those in the OPS_MOVES_SECONDS after it wait for the end of that spell, to go out in one
    "ops.riders_moved" message with every rider that moved at their newest position. The
    timer lives on the event loop it started on; a move on another loop (a test's, or the one
    Django's test client opens per request) starts afresh, sending at once.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.pending: dict[str, dict] = {}
        self.loop = None
        self.waiting = False
        self.task = None  # the loop holds tasks weakly

    async def add(self, move: dict) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop, self.pending, self.waiting = loop, {}, False
        self.pending[move["rider_id"]] = move
        if not self.waiting:
            await self._send_and_wait()

    async def _send_and_wait(self) -> None:
        moves, self.pending = list(self.pending.values()), {}
        self.waiting = True
        self.loop.call_later(self.seconds, self._waited)
        await send_async(OPS_GROUP, ops_riders_moved_message(moves))

    def _waited(self) -> None:
        self.waiting = False
        if self.pending:
            self.task = self.loop.create_task(self._send_and_wait())


ops_moves = OpsMoves(OPS_MOVES_SECONDS)


async def location_broadcast(receipt) -> None:
    """Tells the ops consoles where the rider is now (within OPS_MOVES_SECONDS), and the
    order's sockets too for a fix that took a tracking seq (riders.services.LocationReceipt).
    Call it once the fix is committed. Everything comes from the receipt: no query on the
    ping's path."""
    if not receipt.is_latest:
        return  # an older fix joined the trail; the rider is not there any more
    sends = [
        ops_moves.add(
            ops_rider_move(
                rider_id=receipt.rider_id, lat=receipt.lat, lng=receipt.lng, at=receipt.recorded_at
            )
        )
    ]
    if receipt.order_id is not None:
        sends.append(
            send_async(
                order_group(receipt.order_id),
                location_message(
                    order_id=receipt.order_id,
                    seq=receipt.seq,
                    lat=receipt.lat,
                    lng=receipt.lng,
                    at=receipt.recorded_at,
                ),
            )
        )
    await asyncio.gather(*sends)
