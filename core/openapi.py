"""OpenAPI generation: component names for nested serializers, and the documented error shape."""

from django.core.exceptions import ImproperlyConfigured
from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated

from core.openapi_examples import EXAMPLES

# What a generated client calls each operation: the id is its function, the id's first word
# its tag (the client's module: auth, orders, riders, delivery, payments, ops, service). One
# table, because these names are the API the app teams program against; an operation missing
# from it fails the schema's generation (and so its test): a new endpoint is named on purpose.
OPERATIONS: dict[tuple[str, str], str] = {
    ("GET", "/health/"): "service_health",
    ("GET", "/api/config/"): "service_config",
    ("POST", "/api/v1/auth/otp/request/"): "auth_otp_request",
    ("POST", "/api/v1/auth/otp/verify/"): "auth_otp_verify",
    ("POST", "/api/v1/auth/token/refresh/"): "auth_token_refresh",
    ("POST", "/api/v1/auth/logout/"): "auth_logout",
    ("GET", "/api/v1/auth/me/"): "auth_me_get",
    ("PATCH", "/api/v1/auth/me/"): "auth_me_update",
    ("POST", "/api/v1/orders/quote/"): "orders_quote",
    ("GET", "/api/v1/orders/"): "orders_list",
    ("POST", "/api/v1/orders/"): "orders_create",
    ("GET", "/api/v1/orders/{order_id}/"): "orders_get",
    ("POST", "/api/v1/orders/{order_id}/cancel/"): "orders_cancel",
    ("POST", "/api/v1/orders/{order_id}/rating/"): "orders_rate",
    ("POST", "/api/v1/payments/razorpay/order/"): "payments_razorpay_order",
    ("POST", "/api/v1/payments/razorpay/verify/"): "payments_razorpay_verify",
    ("POST", "/api/v1/payments/razorpay/webhook/"): "payments_razorpay_webhook",
    ("GET", "/api/v1/riders/me/"): "riders_me_get",
    ("PUT", "/api/v1/riders/me/"): "riders_me_replace",
    ("PATCH", "/api/v1/riders/me/"): "riders_me_update",
    ("POST", "/api/v1/riders/me/online/"): "riders_go_online",
    ("POST", "/api/v1/riders/me/offline/"): "riders_go_offline",
    ("POST", "/api/v1/riders/me/location/"): "riders_location",
    ("GET", "/api/v1/riders/me/earnings/"): "riders_earnings",
    ("GET", "/api/v1/riders/me/offers/"): "riders_offers_list",
    ("POST", "/api/v1/riders/offers/{offer_id}/accept/"): "riders_offers_accept",
    ("POST", "/api/v1/riders/offers/{offer_id}/decline/"): "riders_offers_decline",
    ("GET", "/api/v1/delivery/{order_id}/"): "delivery_get",
    ("POST", "/api/v1/delivery/{order_id}/arrived-pickup/"): "delivery_arrived_pickup",
    ("POST", "/api/v1/delivery/{order_id}/picked-up/"): "delivery_picked_up",
    ("POST", "/api/v1/delivery/{order_id}/arrived-drop/"): "delivery_arrived_drop",
    ("POST", "/api/v1/delivery/{order_id}/deliver/"): "delivery_deliver",
    ("POST", "/api/v1/delivery/{order_id}/fail/"): "delivery_fail",
    ("GET", "/api/v1/ops/readiness/"): "ops_readiness",
}


class AutoSchema(openapi.AutoSchema):
    def get_operation_id(self) -> str:
        try:
            return OPERATIONS[(self.method, self.path)]
        except KeyError:
            raise ImproperlyConfigured(
                f"{self.method} {self.path} has no operation id in core.openapi.OPERATIONS"
            ) from None

    def get_tags(self) -> list[str]:
        return [self.get_operation_id().partition("_")[0]]

    def get_auth(self):
        # A view that reads no credential (core.views.PublicApi) has no security requirement,
        # rather than an optional one ([{}]) that generators read as "needs a token".
        if not self.view.authentication_classes:
            return []
        return super().get_auth()

    def get_examples(self):
        return super().get_examples() or EXAMPLES.get(self.get_operation_id(), [])

    def _get_response_bodies(self, direction="response"):
        """The view's own answers, then those any call of it may get (_common_errors), each in
        the error shape; a view's own description of a status is kept."""
        responses = super()._get_response_bodies(direction)
        for code, description in self._common_errors().items():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    error_response(description), str(code), None, direction
                )
        for code in ("429", "503"):
            if code in responses and self._is_error_shape(responses[code]):
                responses[code]["headers"] = RETRY_AFTER_HEADER
        return dict(sorted(responses.items()))

    def _common_errors(self) -> dict[int, str]:
        permissions = self.view.get_permissions()
        errors = {}
        if any(isinstance(permission, IsAuthenticated) for permission in permissions):
            errors[401] = (
                "not_authenticated (no access token) or token_not_valid (expired or revoked): "
                "renew it with auth/token/refresh/, or sign in again."
            )
        # A permission that refuses with a code of its own (riders' IsRider: not_a_rider).
        refusals = [permission.code for permission in permissions if hasattr(permission, "code")]
        if refusals:
            errors[403] = ", ".join(refusals) + "."
        if self.method in {"POST", "PUT", "PATCH"}:
            # Any body is read up to its limit (core.handlers), whether the view uses it or not;
            # only a view that parses one can refuse its media type.
            errors[413] = "payload_too_large: the body is over the size limit."
            if self.view.get_parsers() and self.get_request_serializer() is not None:
                errors[415] = "unsupported_media_type: send Content-Type: application/json."
        if self.view.get_throttles():
            errors[429] = "throttled: too many calls; try again after Retry-After seconds."
        errors[500] = "server_error: a fault on our side, logged with the X-Request-ID."
        errors[503] = (
            "service_unavailable: the database or Redis is unreachable; try again after "
            "Retry-After seconds."
        )
        return errors

    @staticmethod
    def _is_error_shape(response: dict) -> bool:
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        return schema.get("$ref", "").endswith("/ApiError")

    def get_serializer_name(self, serializer, direction) -> str:
        cls = serializer.__class__
        outer, _, inner = cls.__qualname__.rpartition(".")
        if outer and "<locals>" not in outer:
            # Every API nests an InputSerializer and an OutputSerializer; by bare class name they
            # would all collide. OtpRequestApi.InputSerializer -> "OtpRequestInput".
            return outer.rpartition(".")[2].removesuffix("Api") + inner
        return cls.__name__


ERROR_SCHEMA = inline_serializer(
    "ApiError",
    {
        "error": inline_serializer(
            "ApiErrorBody",
            {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(required=False),
            },
        )
    },
)


RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before calling again.",
        "schema": {"type": "integer"},
    }
}


def error_response(description: str) -> OpenApiResponse:
    """A documented error answer in the one error shape (core.exceptions)."""
    return OpenApiResponse(ERROR_SCHEMA, description=description)
