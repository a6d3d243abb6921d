"""The ASGI handler for the hottest endpoint, the rider's location ping, without thread hops.

Django's ASGIHandler gives every request a thread of its own and hops into it several times:
for the request_started signal, for the middleware chain (core.handlers keeps that to one
hop), and for response.close(). An async view pays all of them and then hops back to the
event loop. For a request that is one database call, the hops cost more
than the work (docs/performance.md).

`HotPathHandler` serves the paths it is given with Django's own request, URL resolution,
view and middleware classes, but runs the middleware in the event loop: each MiddlewareMixin
hook is called directly instead of through sync_to_async. That is safe only for middleware
that does no I/O, so the chain is settings.HOT_PATH_MIDDLEWARE, which leaves out the session,
CSRF, user and message middleware a bearer-token JSON API does not use (its test pins the
list). The view must be async and reach the database through core.db.database_call, which
closes old connections itself; that is why the request_started signal is not sent here.
ASGIHandler.__call__ is kept: it gives the request a thread-sensitive context of its own (no
thread starts unless something thread-sensitive runs), and sentry-sdk patches it to give each
request scopes of its own. Every other request goes to the full Django handler.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import resolve, set_script_prefix
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string

from core.handlers import BoundedBodyMixin


class InlineMiddleware:
    """A MiddlewareMixin middleware whose request and response hooks run in the event loop."""

    def __init__(self, middleware, get_response):
        self.get_response = get_response
        self.process_request = getattr(middleware, "process_request", None)
        self.process_response = getattr(middleware, "process_response", None)
        markcoroutinefunction(self)

    async def __call__(self, request):
        response = self.process_request(request) if self.process_request else None
        if response is None:
            response = await self.get_response(request)
        if self.process_response:
            response = self.process_response(request, response)
        return response


def _in_loop(hook):
    async def run(*args):
        return hook(*args)

    return run


class HotPathHandler(BoundedBodyMixin, ASGIHandler):
    """Serves `paths` (as Django routes them) with settings.HOT_PATH_MIDDLEWARE, in the event
    loop; hands every other request, and anything that is not HTTP, to `fallback`."""

    def __init__(self, *, paths, fallback):
        self.paths = frozenset(paths)
        self.fallback = fallback
        for path in self.paths:
            # A sync view would be run by sync_to_async outside any request's thread context,
            # in asgiref's one shared thread.
            if not iscoroutinefunction(resolve(path).func):
                raise ImproperlyConfigured(f"{path} is served by a sync view: not a hot path")
        super().__init__()

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        for middleware_path in reversed(settings.HOT_PATH_MIDDLEWARE):
            middleware_class = import_string(middleware_path)
            if isinstance(middleware_class, type) and issubclass(middleware_class, MiddlewareMixin):
                instance = middleware_class(handler)
                if hasattr(instance, "process_view"):
                    self._view_middleware.insert(0, _in_loop(instance.process_view))
                if hasattr(instance, "process_template_response"):
                    self._template_response_middleware.append(
                        _in_loop(instance.process_template_response)
                    )
                if hasattr(instance, "process_exception"):
                    self._exception_middleware.append(instance.process_exception)
                handler = InlineMiddleware(instance, handler)
            elif getattr(middleware_class, "async_capable", False):
                handler = middleware_class(handler)  # async itself: django-guid, django-cors
            else:
                raise ImproperlyConfigured(f"{middleware_path} can run neither inline nor async")
            handler = convert_exception_to_response(handler)
        self._middleware_chain = handler

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self._path_info(scope) not in self.paths:
            return await self.fallback(scope, receive, send)
        # ASGIHandler.__call__: a thread-sensitive context of the request's own (no thread is
        # started unless something thread-sensitive runs), then handle(). It is also where
        # sentry-sdk wraps every request in scopes of its own.
        return await super().__call__(scope, receive, send)

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = await self.run_get_response(request)
        try:
            await self.send_response(response, send)
        finally:
            # Closing sends request_finished; with no connection opened in this thread, its
            # receivers (close_old_connections, close_caches) have nothing to close.
            response.close()
            body_file.close()

    @staticmethod
    def _path_info(scope):
        root_path = scope.get("root_path", "")
        return scope["path"].removeprefix(root_path) if root_path else scope["path"]
