"""Endpoints for the ops staff: the live readiness report."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

import readiness
from core.openapi import error_response

READINESS_PERMISSION = "core.view_readiness_report"


class IsStaff(BasePermission):
    message = "Only staff may read the readiness report."
    code = "not_staff"

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class MayReadReadiness(BasePermission):
    """The report runs a dozen checks for up to 30 s: the people who run the deployment
    (superusers, or a group given the permission), not every staff member."""

    message = "You need the permission to read the readiness report."
    code = "permission_denied"

    def has_permission(self, request, view):
        return request.user.has_perm(READINESS_PERMISSION)


class ReadinessThrottle(UserRateThrottle):
    scope = "readiness"


class ReadinessApi(APIView):
    permission_classes = [IsAuthenticated, IsStaff, MayReadReadiness]
    throttle_classes = [ReadinessThrottle]

    class OutputSerializer(serializers.Serializer):
        url = serializers.CharField(help_text="The web server checked, without credentials.")
        results = inline_serializer(
            "ReadinessLine",
            {
                "id": serializers.CharField(help_text="Checklist id, e.g. P1.9."),
                "status": serializers.ChoiceField(choices=["PASS", "FAIL", "SKIP"]),
                "detail": serializers.CharField(),
                "text": serializers.CharField(help_text="The checklist line."),
            },
            many=True,
        )
        summary = inline_serializer(
            "ReadinessSummary",
            {
                "pass": serializers.IntegerField(),
                "fail": serializers.IntegerField(),
                "skip": serializers.IntegerField(),
            },
        )

    @extend_schema(
        summary="Production-readiness report of this deployment",
        description="Every checklist line this deployment can be checked against, checked now "
        "(`manage.py readiness --json`): settings, this server's own headers and cookies, "
        "PostgreSQL/PostGIS, Redis, Celery workers and beat. Takes a few seconds (at most about "
        "30); always 200, the failures are in the report.",
        responses={
            200: OutputSerializer,
            403: error_response("not_staff, or permission_denied (core.view_readiness_report)."),
            429: error_response("throttled: a few reports a minute per person (Retry-After)."),
        },
    )
    def get(self, request):
        document = readiness.report(readiness.run())
        return Response(document, headers={"Cache-Control": "no-store"})
