"""What a tracking socket leaves behind once closed, through a real uvicorn server in this
process (the sockets role's protocols) with the project's ASGI app, Redis channel layer and
database: nothing that only a full garbage collection can free.

The sockets worker runs full collections rarely (gunicorn_conf.py: they stall its event loop),
so an object graph that a closed socket leaves in a reference cycle stays in memory until one
runs: bench.sockets_memory measured 56 KiB per socket lifetime from such cycles. Here automatic
collections are off while sockets open and close; what a collection then finds is exactly
what they left in cycles.
"""

import asyncio
import contextlib
import gc
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from unittest import mock

import pytest
import uvicorn
import websockets
from django.utils import timezone
from websockets.server import ServerProtocol

from config.asgi import application
from config.workers import DrainingWebSocketProtocol, LingeringHttpProtocol
from core.realtime import location_message, order_group, send_async
from delivery.consumers import DeliveryConsumer
from orders.tests.factories import OrderFactory
from riders.tests.factories import RiderFactory, access_token
from riders.tests.support import spaced_fix

pytestmark = [pytest.mark.django_db(transaction=True)]

SOCKETS = 20
# The modules whose objects a closed socket must not leave in cycles: the server's side only
# (the test's client is the websockets library's, and asyncio's objects are shared by both);
# and websockets' ServerProtocol, which holds the socket's zlib state.
SERVER_SIDE = (
    *("uvicorn", "config", "core", "accounts", "delivery", "orders", "riders", "payments"),
    *("django", "channels", "rest_framework"),
)


def server_side(garbage: list) -> Counter:
    return Counter(
        f"{type(item).__module__}.{type(item).__qualname__}"
        for item in garbage
        if type(item).__module__.startswith(SERVER_SIDE)
    )


async def tracking_socket_life(port: int, order_id, token: str) -> None:
    """A tracking socket's life: the snapshot, then a location frame, before which the consumer
    reads the watcher's rights again (recheck_seconds is 0 here, a minute as shipped)."""
    url = f"ws://127.0.0.1:{port}/ws/delivery/{order_id}/?token={token}"
    async with websockets.connect(url, open_timeout=10) as socket:
        await asyncio.wait_for(socket.recv(), 10)  # the snapshot
        message = location_message(
            order_id=order_id, seq=1, lat=12.97, lng=77.59, at=timezone.now()
        )
        await send_async(order_group(order_id), message)
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "location"


async def rider_socket_life(port: int, token: str) -> None:
    """A rider socket's life: two fixes, each stored, relayed and acknowledged."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/rider/?token={token}") as socket:
        for _ in range(2):
            await socket.send(json.dumps({"type": "location", **spaced_fix()}))
            answer = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert answer["type"] == "location_ack", answer


@contextlib.asynccontextmanager
async def sockets_server():
    """uvicorn with the sockets role's protocols and the project's ASGI app, in this process's
    loop; yields its port."""
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=0,
        http=LingeringHttpProtocol,
        ws=DrainingWebSocketProtocol,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield server, server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)


async def garbage_left_by(life: Callable[[int], Awaitable[None]]) -> Counter:
    """What SOCKETS lives of a socket leave in reference cycles, server side (after one life
    first: caches, pools and imports filled on first use are not garbage)."""
    async with sockets_server() as (server, port):
        await life(port)
        gc.collect()
        gc.disable()
        try:
            for _ in range(SOCKETS):
                await life(port)
            while server.server_state.connections:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            # Objects with a finalizer (a generator) that break their cycle when finalized never
            # reach gc.garbage: the server's websockets protocols still alive are counted first.
            left = Counter(
                f"{ServerProtocol.__module__}.{ServerProtocol.__qualname__}"
                for item in gc.get_objects()
                if type(item) is ServerProtocol  # isinstance fails on a dead weak proxy
            )
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            left += server_side(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    print(f"in cycles after {SOCKETS} sockets: {sum(left.values())} server-side objects")
    for name, count in left.most_common(40):
        print(f"  {count:>5}  {name}")
    return left


@pytest.mark.asyncio
@mock.patch.object(DeliveryConsumer, "recheck_seconds", 0)
async def test_a_closed_tracking_socket_leaves_nothing_in_reference_cycles():
    order = await asyncio.to_thread(OrderFactory)
    token = access_token(order.customer)
    left = await garbage_left_by(lambda port: tracking_socket_life(port, order.pk, token))
    assert not left, left.most_common(20)


@pytest.mark.asyncio
async def test_a_closed_rider_socket_leaves_nothing_in_reference_cycles():
    rider = await asyncio.to_thread(RiderFactory)
    token = access_token(rider.user)
    left = await garbage_left_by(lambda port: rider_socket_life(port, token))
    assert not left, left.most_common(20)
