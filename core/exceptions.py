"""The one error shape of the API: {"error": {"code", "message", "fields"?}}.

Services raise `ApiError` with their app's code (an `ErrorCode` member); DRF errors, Django's
own 400/403/404/500 pages and dependency outages are all rendered in the same shape.
"""

import contextlib
import enum
import logging
import sys

import redis.exceptions
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "5"

# Errors that mean a dependency is down or overloaded, not that the request was wrong.
DEPENDENCY_ERRORS = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class ErrorCode(enum.Enum):
    """An app's refusals, in one place: each member is the code a client reads, its HTTP status
    and the message it gets unless the raise says more. Every app keeps one such enum in its
    `errors.py` (`OrderError`, `PaymentError` ...) and raises `ApiError(OrderError.X)`; codes the
    apps share (not_found, permission_denied, invalid) are `CommonError`'s, with the raise naming
    what was not found or which permission is missing.
    """

    def __init__(self, code: str, status_code: int, message: str):
        self.code = code
        self.status_code = status_code
        self.message = message


@enum.unique
class CommonError(ErrorCode):
    BAD_REQUEST = "bad_request", status.HTTP_400_BAD_REQUEST, "Bad request."
    INVALID = "invalid", status.HTTP_400_BAD_REQUEST, "Invalid input."
    PERMISSION_DENIED = (
        "permission_denied",
        status.HTTP_403_FORBIDDEN,
        "You do not have permission.",
    )
    NOT_FOUND = "not_found", status.HTTP_404_NOT_FOUND, "Not found."
    SERVER_ERROR = (
        "server_error",
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        "Something went wrong on our side; it has been logged.",
    )
    SERVICE_UNAVAILABLE = (
        "service_unavailable",
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "A service this request needs is unavailable; try again shortly.",
    )


class ApiError(Exception):
    """A refusal the client can act on. Services raise it with their app's code; the handler
    renders it. `kind` is the ErrorCode member, for a caller that handles one refusal:
    `except ApiError as refusal: if refusal.kind is not RiderError.UNAVAILABLE: raise`.
    """

    def __init__(self, kind: ErrorCode, message: str = "", *, fields=None, retry_after=None):
        self.kind = kind
        self.code = kind.code
        self.status_code = kind.status_code
        self.message = message or kind.message
        self.fields = fields
        # Seconds, sent as Retry-After (429 cooldowns); 503s default to RETRY_AFTER_SECONDS.
        self.retry_after = retry_after
        super().__init__(self.message)


@contextlib.contextmanager
def suppressed(*kinds: ErrorCode):
    """contextlib.suppress for refusals of the given kinds; any other error passes through."""
    try:
        yield
    except ApiError as refusal:
        if refusal.kind not in kinds:
            raise


UNAVAILABLE = CommonError.SERVICE_UNAVAILABLE


def error_body(code: str, message: str, fields=None) -> dict:
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _plain(detail):
    """DRF's ErrorDetail tree as plain JSON types."""
    if isinstance(detail, dict):
        return {key: _plain(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_plain(item) for item in detail]
    return str(detail)


def _first_message(detail) -> str:
    while isinstance(detail, (list, dict)) and detail:
        detail = detail[0] if isinstance(detail, list) else next(iter(detail.values()))
    return str(detail) if detail else "Invalid input."


def _log_dependency_error(exc: Exception) -> None:
    logger.error("dependency unavailable: %s: %s", type(exc).__name__, exc)


def dependency_error_response(exc: Exception) -> JsonResponse:
    _log_dependency_error(exc)
    body = error_body(UNAVAILABLE.code, UNAVAILABLE.message)
    response = JsonResponse(body, status=UNAVAILABLE.status_code)
    response["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def api_exception_handler(exc, context):
    if isinstance(exc, ApiError):
        retry_after = exc.retry_after or (RETRY_AFTER_SECONDS if exc.status_code == 503 else None)
        return Response(
            error_body(exc.code, exc.message, exc.fields),
            status=exc.status_code,
            headers={"Retry-After": str(retry_after)} if retry_after else None,
        )
    if isinstance(exc, RequestDataTooBig):
        # A body over DATA_UPLOAD_MAX_MEMORY_SIZE read through request.body (the location and
        # webhook views). Django would answer 400 and log it at ERROR as a security event.
        return Response(
            error_body("payload_too_large", "The request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DEPENDENCY_ERRORS):
        _log_dependency_error(exc)
        return Response(
            error_body(UNAVAILABLE.code, UNAVAILABLE.message),
            status=UNAVAILABLE.status_code,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's handler500 renders it after logging it
    if isinstance(exc, drf_exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _plain(detail)
            non_field = fields.pop("non_field_errors", None)
            message = _first_message(non_field) if non_field else "Invalid input."
            response.data = error_body("invalid", message, fields or None)
        else:
            response.data = error_body("invalid", _first_message(detail))
        return response
    if isinstance(exc, drf_exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        response.data = error_body(code, _first_message(exc.detail))
    else:  # Http404 and Django's PermissionDenied, converted by DRF
        code = "not_found" if response.status_code == 404 else "permission_denied"
        message = "Not found." if code == "not_found" else "You do not have permission."
        response.data = error_body(code, message)
    return response


# Django-level handlers (URLs outside DRF, errors raised in middleware).


# What Django answers by itself (its handlers, below, and its DEBUG pages under /api/).
_DJANGO_ANSWERS = {
    400: CommonError.BAD_REQUEST,
    403: CommonError.PERMISSION_DENIED,
    404: CommonError.NOT_FOUND,
    500: CommonError.SERVER_ERROR,
}


def error_response_for(status_code: int) -> JsonResponse:
    """The error shape for a status Django answered by itself."""
    kind = _DJANGO_ANSWERS.get(status_code) or (
        CommonError.SERVER_ERROR if status_code >= 500 else CommonError.BAD_REQUEST
    )
    return JsonResponse(error_body(kind.code, kind.message), status=status_code)


def bad_request(request, exception=None):
    return error_response_for(400)


def permission_denied(request, exception=None):
    return error_response_for(403)


def not_found(request, exception=None):
    return error_response_for(404)


def server_error(request):
    exc = sys.exc_info()[1]
    if isinstance(exc, DEPENDENCY_ERRORS):
        return dependency_error_response(exc)
    return error_response_for(500)
