"""Middleware: health probes and dependency outages, early in the chain."""

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
