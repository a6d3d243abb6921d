"""A request thread hands its realtime messages to its event loop and goes on
(core.realtime.send_many): through the project's Redis channel layer, the messages arrive in the
order they were handed over, and a channel layer that hangs holds no request thread."""

import asyncio
import copy
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from core import realtime
from devstack.ports import SilentListener

GROUP = "order.outbox-test"


def numbered(count: int) -> list[list[tuple[str, dict]]]:
    return [[(GROUP, {"type": "status", "seq": n})] for n in range(count)]


@pytest.mark.asyncio
async def test_messages_handed_over_by_request_threads_arrive_in_order():
    # given a socket's channel in an order's group, on the real Redis layer
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(GROUP, channel)
    try:
        # when a request thread hands over thirty sends, one after another
        def request():
            for messages in numbered(30):
                realtime.send_many(messages)

        await sync_to_async(request)()

        # then the socket hears all thirty, in that order
        heard = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(30)]
        assert [message["seq"] for message in heard] == list(range(30))
        await realtime.flush(timeout=5)
        assert realtime._outbox.pending == set()
    finally:
        await layer.group_discard(GROUP, channel)


@pytest.fixture
def hung_channel_layer(settings):
    """The channel layer's Redis accepts connections and never answers."""
    listener = SilentListener()
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"][0]["address"] = f"redis://127.0.0.1:{listener.port}/0"
    settings.CHANNEL_LAYERS = layers  # channels drops its layers when the setting changes
    yield
    listener.close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("hung_channel_layer")
async def test_a_hung_channel_layer_holds_no_request_thread():
    # when a request thread sends while the layer's Redis hangs
    started = time.monotonic()
    await sync_to_async(realtime.send_many)(numbered(1)[0])
    took = time.monotonic() - started

    # then the thread went on at once; the loop's send waits for the Redis timeout alone
    assert took < 1.0, took
    assert len(realtime._outbox.pending) == 1
    await realtime.flush(timeout=settings.REDIS_SOCKET_TIMEOUT + 5)
    assert realtime._outbox.pending == set()  # given up and logged, not stuck


@pytest.mark.asyncio
@pytest.mark.usefixtures("hung_channel_layer")
async def test_messages_that_waited_too_long_for_a_hung_layer_are_dropped(monkeypatch, caplog):
    # given messages may wait 1 s for the channel layer
    monkeypatch.setattr(realtime, "OUTBOX_MAX_WAIT_SECONDS", 1.0)

    # when a request thread hands over two sends while the layer's Redis hangs
    def request():
        for messages in numbered(2):
            realtime.send_many(messages)

    started = time.monotonic()
    await sync_to_async(request)()
    await realtime.flush(timeout=settings.REDIS_SOCKET_TIMEOUT * 2 + 5)

    # then the first waits out the Redis timeout; the second, stale by then, is dropped
    took = time.monotonic() - started
    assert took < settings.REDIS_SOCKET_TIMEOUT * 2, took
    assert realtime._outbox.pending == set()
    assert "dropped 1 realtime message(s)" in caplog.text


@pytest.mark.usefixtures("hung_channel_layer")
def test_without_a_serving_loop_a_send_waits_for_its_messages():
    # a Celery task or a command has no worker loop to hand over to: it sends and waits, and a
    # hung layer costs it the Redis timeout (REDIS_SOCKET_TIMEOUT), not forever
    started = time.monotonic()
    realtime.send_many(numbered(1)[0])
    took = time.monotonic() - started
    assert settings.REDIS_SOCKET_TIMEOUT - 1 <= took < settings.REDIS_SOCKET_TIMEOUT + 5, took
    assert realtime._outbox.pending == set()
