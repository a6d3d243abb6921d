"""A bare ASGI app for the worker-recycling test: HTTP answers at once, a WebSocket is accepted
only after ACCEPT_AFTER seconds, as a consumer that signs its user in under load might be."""

import asyncio

ACCEPT_AFTER = 1.5


async def app(scope, receive, send):
    if scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await asyncio.sleep(ACCEPT_AFTER)
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass
