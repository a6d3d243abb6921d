"""Middleware that must sit early: health probes and dependency outages."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.utils.deprecation import MiddlewareMixin

from core.exceptions import DEPENDENCY_ERRORS, dependency_error_response

HEALTH_PATH = "/health/"


class HealthCheckMiddleware:
    """Answers /health/ before Host validation and the HTTPS redirect.

    Load balancers (ALB target groups, Kubernetes probes, Docker) call the container by IP over
    plain HTTP; ALLOWED_HOSTS and SECURE_SSL_REDIRECT would otherwise turn them away.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        from core.apis import HealthApi

        self.get_response = get_response
        self.health_view = HealthApi.as_view()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        if request.path == HEALTH_PATH:
            return self._health(request)
        return self.get_response(request)

    async def _acall(self, request):
        if request.path == HEALTH_PATH:
            return await sync_to_async(self._health)(request)
        return await self.get_response(request)

    def _health(self, request):
        # Short-circuiting skips the handler step that renders DRF responses: do it here.
        return self.health_view(request).render()


class DependencyErrorMiddleware(MiddlewareMixin):
    """A database or Redis outage inside a view answers 503 JSON, even with DEBUG on."""

    def process_exception(self, request, exception):
        if isinstance(exception, DEPENDENCY_ERRORS):
            return dependency_error_response(exception)
        return None
