"""config.workers.LingeringHttpProtocol, through a real uvicorn server on a real socket: what a
connection that is idle when its worker starts to leave gets (core/tests/test_graceful_shutdown
shows the same under gunicorn's recycling)."""

import asyncio
import base64
import contextlib
import os
import struct
import time

import pytest
import uvicorn

from config.workers import LingeringHttpProtocol, RestartingWebSocketProtocol

LOCALHOST = "127.0.0.1"


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


@contextlib.asynccontextmanager
async def leaving_server_with_an_idle_connection():
    """A server with one kept-alive connection that has had one answer, then told to leave;
    yields the connection's streams once the server has asked it to shut down."""
    config = uvicorn.Config(
        app,
        host=LOCALHOST,
        port=0,
        http=LingeringHttpProtocol,
        ws=RestartingWebSocketProtocol,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await read_answer(reader)
    assert first.startswith(b"HTTP/1.1 200") and b"connection: close" not in first.lower()
    server.should_exit = True
    (connection,) = server.server_state.connections
    while not connection.leaving:
        await asyncio.sleep(0.01)
    try:
        yield server, reader, writer
    finally:
        writer.close()
        await asyncio.wait_for(serving, 15)


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


@pytest.mark.asyncio
async def test_a_request_on_an_idle_connection_of_a_leaving_worker_is_answered_then_closed():
    async with leaving_server_with_an_idle_connection() as (_, reader, writer):
        # when the client sends its next request on it, as the worker leaves
        await asyncio.sleep(0.3)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

        # then it is answered, told the connection closes, and the connection closes
        answer = await read_answer(reader)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b"connection: close" in answer.lower(), answer
        assert await asyncio.wait_for(reader.read(), 5) == b""


@pytest.mark.asyncio
async def test_an_idle_connection_of_a_leaving_worker_is_closed_after_the_linger():
    async with leaving_server_with_an_idle_connection() as (server, reader, _):
        # when the client sends nothing
        started = time.monotonic()
        closed = await asyncio.wait_for(reader.read(), 5)

        # then the connection is closed after about LINGER_SECONDS, and the worker is gone
        lasted = time.monotonic() - started
        assert closed == b""
        assert 0.5 * LingeringHttpProtocol.LINGER_SECONDS <= lasted <= 3, lasted
    assert not server.server_state.connections


@pytest.mark.asyncio
async def test_a_socket_opened_on_an_idle_connection_of_a_leaving_worker_is_closed_with_1012():
    async with leaving_server_with_an_idle_connection() as (_, reader, writer):
        # when the client upgrades the connection to a WebSocket
        key = base64.b64encode(os.urandom(16))
        writer.write(
            b"GET /ws/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

        # then the socket is accepted and closed at once with 1012 (reconnect elsewhere)
        answer = await read_answer(reader)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        opcode, length = await asyncio.wait_for(reader.readexactly(2), 5)
        assert opcode & 0x0F == 0x8, opcode  # a close frame
        (code,) = struct.unpack("!H", (await reader.readexactly(length))[:2])
        assert code == 1012
