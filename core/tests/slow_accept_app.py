"""A bare ASGI app for the worker tests: HTTP answers at once (after N seconds for a path
/sleep/<N>; after blocking the worker's event loop N seconds for /block/<N>), a WebSocket is
accepted only after ACCEPT_AFTER seconds, as a consumer that signs its user in under load
might be."""

import asyncio
import time

ACCEPT_AFTER = 1.5


async def app(scope, receive, send):
    if scope["type"] == "http":
        await receive()
        if scope["path"].startswith("/sleep/"):
            await asyncio.sleep(float(scope["path"].removeprefix("/sleep/")))
        if scope["path"].startswith("/block/"):
            time.sleep(float(scope["path"].removeprefix("/block/")))  # a worker stuck in code
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await asyncio.sleep(ACCEPT_AFTER)
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass
