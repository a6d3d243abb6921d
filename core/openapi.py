"""OpenAPI generation: distinct component names for the serializers nested in API classes."""

from drf_spectacular import openapi


class AutoSchema(openapi.AutoSchema):
    def get_serializer_name(self, serializer, direction) -> str:
        cls = serializer.__class__
        outer, _, inner = cls.__qualname__.rpartition(".")
        if outer and "<locals>" not in outer:
            # Every API nests an InputSerializer and an OutputSerializer; by bare class name they
            # would all collide. OtpRequestApi.InputSerializer -> "OtpRequestInput".
            return outer.rpartition(".")[2].removesuffix("Api") + inner
        return cls.__name__
