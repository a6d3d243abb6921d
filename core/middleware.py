"""Middleware: health probes and dependency outages (early), one thread per request (last)."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.utils.deprecation import MiddlewareMixin

from core.exceptions import DEPENDENCY_ERRORS, dependency_error_response


class ProbeMiddleware:
    """Answers /health/ and /metrics before Host validation and the HTTPS redirect.

    Load balancers (ALB target groups, Kubernetes probes, Docker) and Prometheus call the
    container by its IP over plain HTTP; ALLOWED_HOSTS and SECURE_SSL_REDIRECT would otherwise
    turn them away.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        from core.apis import HealthApi
        from core.metrics import metrics_view

        self.get_response = get_response
        self.views = {"/health/": HealthApi.as_view(), "/metrics": metrics_view}
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        if request.path in self.views:
            return self._probe(request)
        return self.get_response(request)

    async def _acall(self, request):
        if request.path in self.views:
            return await sync_to_async(self._probe)(request)
        return await self.get_response(request)

    def _probe(self, request):
        response = self.views[request.path](request)
        # Short-circuiting skips the handler step that renders DRF responses: do it here.
        if hasattr(response, "render"):
            response.render()
        return response


class DependencyErrorMiddleware(MiddlewareMixin):
    """A database or Redis outage inside a view answers 503 JSON, even with DEBUG on."""

    def process_exception(self, request, exception):
        if isinstance(exception, DEPENDENCY_ERRORS):
            return dependency_error_response(exception)
        return None


class SyncChainMiddleware:
    """Last in MIDDLEWARE: under ASGI, runs the whole chain in the request's one thread.

    When Django builds an async chain, each MiddlewareMixin middleware (most of Django's own,
    django-prometheus, this module's) calls its process_request and process_response hooks
    through sync_to_async, one thread hop each: about fifteen per request with this project's
    middleware, each a wake-up of another thread. This sync-only last step makes Django run
    the chain synchronously in the thread it gives each request, with no hop between
    middleware; sync views run right there, async views (the rider-location ping) on the event
    loop, one hop away. Under WSGI it does nothing. Measured in docs/performance.md.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
