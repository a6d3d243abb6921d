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

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)
