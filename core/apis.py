"""Public, unauthenticated endpoints: health and the apps' bootstrap configuration."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core import health
from orders.selectors import service_area_list_active


class PublicApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]


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


class ServiceAreaSerializer(serializers.Serializer):
    name = serializers.CharField()
    bbox = serializers.ListField(
        child=serializers.FloatField(),
        min_length=4,
        max_length=4,
        help_text="[min_lng, min_lat, max_lng, max_lat]",
    )


class ConfigApi(PublicApi):
    class OutputSerializer(serializers.Serializer):
        otp_expiry_seconds = serializers.IntegerField()
        otp_length = serializers.IntegerField()
        rider_fixed_pay_per_order = serializers.IntegerField(help_text="In paise.")
        currency = serializers.CharField()
        razorpay_key_id = serializers.CharField(allow_null=True)
        payments_enabled = serializers.BooleanField()
        websocket_path = serializers.CharField()
        max_live_orders = serializers.IntegerField(
            help_text="Unfinished orders one customer may have at once (429 past it)."
        )
        pricing = inline_serializer(
            "PricingConstants",
            {
                "base_fare_paise": serializers.IntegerField(),
                "per_km_paise": serializers.IntegerField(),
            },
        )
        service_areas = ServiceAreaSerializer(many=True)

    @extend_schema(summary="Bootstrap configuration for the apps", responses=OutputSerializer)
    def get(self, request):
        areas = [
            {"name": area.name, "bbox": [round(value, 6) for value in area.area.extent]}
            for area in service_area_list_active()
        ]
        return Response(
            {
                "otp_expiry_seconds": settings.OTP_EXPIRY_SECONDS,
                "otp_length": settings.OTP_LENGTH,
                "rider_fixed_pay_per_order": settings.RIDER_FIXED_PAY_PER_ORDER_PAISE,
                "currency": settings.CURRENCY,
                "razorpay_key_id": settings.RAZORPAY_KEY_ID or None,
                "payments_enabled": settings.PAYMENTS_ENABLED,
                "websocket_path": settings.WEBSOCKET_PATH,
                "max_live_orders": settings.ORDER_MAX_LIVE_PER_CUSTOMER,
                "pricing": {
                    "base_fare_paise": settings.PRICING_BASE_FARE_PAISE,
                    "per_km_paise": settings.PRICING_PER_KM_PAISE,
                },
                "service_areas": areas,
            }
        )
