"""OpenAPI generation: component names for nested serializers, and the documented error shape."""

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers


class AutoSchema(openapi.AutoSchema):
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


def error_response(description: str) -> OpenApiResponse:
    """A documented error answer in the one error shape (core.exceptions)."""
    return OpenApiResponse(ERROR_SCHEMA, description=description)
