"""Health: the public, unauthenticated endpoint the platforms probe."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from core import health
from core.views import PublicApi


class HealthApi(PublicApi):
    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["ok", "unavailable"])
        checks = inline_serializer(
            "HealthChecks",
            {
                "database": serializers.CharField(),
                "cache": serializers.CharField(),
                "celery_beat": serializers.CharField(),
            },
        )

    @extend_schema(
        summary="Liveness and readiness",
        description="503 when the database or Redis is unreachable. Beat staleness is reported "
        "but never fails the check. Answers within HEALTH_CHECK_TIMEOUT_SECONDS (3 s).",
        responses={200: OutputSerializer, 503: OutputSerializer},
    )
    def get(self, request):
        healthy, checks = health.run_checks()
        return Response(
            {"status": "ok" if healthy else "unavailable", "checks": checks},
            status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Cache-Control": "no-store"},
        )
