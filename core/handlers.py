"""Django's ASGI handler with the middleware chain and the view in one thread hop.

Django's ASGIHandler always builds an async chain whose innermost step,
`_get_response_async`, runs on the event loop. With this project's middleware (all of it can
run sync) a request to a sync view therefore went event loop -> the request's thread (the
chain) -> event loop (URL resolution, view middleware) -> the request's thread again (the
view) and back twice: four hops where one does. `SyncChainASGIHandler` builds the chain as
the WSGI handler does, sync from end to end with `_get_response` innermost, and runs it in
the request's thread with one `sync_to_async` call (thread-sensitive: every sync call of one
request goes to one thread, as in Django's handler). An async view is called from that thread
through `async_to_sync`, back on the event loop. The rider's location ping, the one hot async
view, has a handler of its own (core.hotpath). Measured in docs/performance.md.
"""

import io

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler


class BoundedBodyMixin:
    """Reads a request body into memory and stops one byte past DATA_UPLOAD_MAX_MEMORY_SIZE.

    Django's `read_body` takes the whole body, however large, into a temporary file that spills
    to disk past FILE_UPLOAD_MAX_MEMORY_SIZE, and only then does `request.body` find it too big:
    a client could make every web process write gigabytes to /tmp. This service takes no file
    uploads, so no body needs more than DATA_UPLOAD_MAX_MEMORY_SIZE: a body is read into memory
    up to one byte past it and the rest is left unread. `request.body` then raises
    RequestDataTooBig (Django checks the Content-Length header, then the buffered size), which
    the API answers with 413 `payload_too_large` through the usual middleware, so it is logged
    and counted like any other answer. A chunked body is given the Content-Length it was read
    with, which DRF needs to read it at all.
    """

    async def read_body(self, receive):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = io.BytesIO()
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            chunk = message.get("body", b"")
            if limit is not None and size + len(chunk) > limit:
                body.write(chunk[: limit + 1 - size])  # one byte past: Django's check fires
                break
            body.write(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        body.seek(0)
        return body

    def create_request(self, scope, body_file):
        # A chunked body comes with no Content-Length, and DRF reads no body without one: its
        # fields would all be "required". Give the request the length that was read.
        if not any(name == b"content-length" for name, _ in scope.get("headers", ())):
            length = str(body_file.getbuffer().nbytes).encode()
            scope = {**scope, "headers": [*scope.get("headers", ()), (b"content-length", length)]}
        return super().create_request(scope, body_file)

    async def listen_for_disconnect(self, receive):
        # Django's asserts that nothing but the disconnect follows the body; the unread rest of a
        # body cut off above arrives here while the view answers, and is dropped.
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()


class SyncChainASGIHandler(BoundedBodyMixin, ASGIHandler):
    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)
