"""Middleware: request ids, health probes and dependency outages, early in the chain."""

import logging
import re

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.utils.decorators import sync_and_async_middleware
from django.utils.deprecation import MiddlewareMixin
from django_guid.middleware import guid_middleware

from core.exceptions import DEPENDENCY_ERRORS, dependency_error_response, error_response_for

logger = logging.getLogger(__name__)

# A caller's own request id is kept when it could not smuggle anything into a log line or a
# header: nginx's $request_id, an ALB's "Root=1-67891233-abcdef012345678912345678", a UUID.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:=-]{1,200}")
REQUEST_ID_META = "HTTP_X_REQUEST_ID"


def _drop_unsafe_request_id(request) -> None:
    sent = request.META.get(REQUEST_ID_META)
    if sent is not None and not SAFE_REQUEST_ID.fullmatch(sent):
        logger.info(
            "X-Request-ID of %d characters not kept: unsafe characters or too long", len(sent)
        )
        del request.META[REQUEST_ID_META]
        request.__dict__.pop("headers", None)  # HttpRequest.headers is read from META once


@sync_and_async_middleware
def request_id_middleware(get_response):
    """django-guid's middleware (the id in every log line, the response and Celery tasks),
    keeping the caller's X-Request-ID when it is of safe characters (SAFE_REQUEST_ID) and
    giving the request a fresh UUID otherwise."""
    with_guid = guid_middleware(get_response)
    if iscoroutinefunction(with_guid):

        async def middleware(request):
            _drop_unsafe_request_id(request)
            return await with_guid(request)

    else:

        def middleware(request):
            _drop_unsafe_request_id(request)
            return with_guid(request)

    return middleware


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


class ApiErrorShapeMiddleware(MiddlewareMixin):
    """Every /api/ answer is JSON: with DEBUG on, Django answers an unknown path or an uncaught
    exception with its HTML debug page, which an app's JSON parser chokes on. The traceback
    is still in the log."""

    def process_response(self, request, response):
        if (
            response.status_code >= 400
            and request.path_info.startswith("/api/")
            and response.get("Content-Type", "").startswith("text/html")
        ):
            return error_response_for(response.status_code)
        return response
