"""Rider endpoints: the profile, going online and offline, location pings and earnings (the
rider's offers are delivery's: delivery/apis.py, mounted under the same /api/v1/riders/)."""

import json
from datetime import date

from django.http import JsonResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from core.exceptions import api_exception_handler
from core.openapi import error_response
from riders.models import Rider
from riders.permissions import RiderApi
from riders.selectors import earnings_for_rider
from riders.serializers import RiderLocationInputSerializer, RiderLocationOutputSerializer
from riders.services import (
    rider_go_offline,
    rider_go_online,
    rider_location_ping,
    rider_profile_update,
)


class RiderProfileOutputSerializer(serializers.Serializer):
    name = serializers.CharField(source="user.name")
    vehicle_type = serializers.ChoiceField(choices=Rider.VehicleType.choices)
    vehicle_number = serializers.CharField()
    status = serializers.ChoiceField(choices=Rider.Status.choices)
    approved = serializers.BooleanField(help_text="Only approved riders can go online.")


class RiderMeApi(RiderApi):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, allow_blank=True)
        vehicle_type = serializers.ChoiceField(choices=Rider.VehicleType.choices)
        vehicle_number = serializers.CharField(
            max_length=20, allow_blank=True, help_text="Registration, e.g. KA01AB1234."
        )

        def validate_vehicle_number(self, value: str) -> str:
            value = "".join(value.split()).upper()  # "ka 01 ab 1234" is KA01AB1234
            # Uppercasing can lengthen it ("ß" -> "SS"): check the column's limit again.
            limit = Rider._meta.get_field("vehicle_number").max_length
            if len(value) > limit:
                raise serializers.ValidationError(f"At most {limit} characters, uppercased.")
            return value

        def validate(self, attrs):
            others = sorted(set(self.initial_data) - set(self.fields))
            if others:
                raise serializers.ValidationError(
                    {field: ["This field cannot be changed here."] for field in others}
                )
            return attrs

    @extend_schema(
        summary="The signed-in rider's profile",
        description="A rider's first visit creates the profile: unapproved and offline.",
        responses={
            200: RiderProfileOutputSerializer,
        },
    )
    def get(self, request):
        return Response(RiderProfileOutputSerializer(self.rider()).data)

    PROFILE_UPDATE_RESPONSES = {
        200: RiderProfileOutputSerializer,
        400: error_response("Invalid field, or one that cannot be changed (status, approved)."),
        409: error_response("rider_vehicle_locked: an approved rider's vehicle is fixed."),
    }

    @extend_schema(
        summary="Replace the rider's name and vehicle",
        description="Every field sent; status and approval are not the rider's to change.",
        request=InputSerializer,
        responses=PROFILE_UPDATE_RESPONSES,
    )
    def put(self, request):
        return self._update(request, partial=False)

    @extend_schema(
        summary="Change some of the rider's name and vehicle",
        description="Only the fields sent change.",
        request=InputSerializer,
        responses=PROFILE_UPDATE_RESPONSES,
    )
    def patch(self, request):
        return self._update(request, partial=True)

    def _update(self, request, *, partial: bool):
        serializer = self.InputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        rider = rider_profile_update(rider=self.rider(), **serializer.validated_data)
        return Response(RiderProfileOutputSerializer(rider).data)


class RiderOnlineApi(RiderApi):
    @extend_schema(
        summary="Go online: start receiving offers",
        description="Idempotent. A rider on a delivery stays on it.",
        request=None,
        responses={
            200: RiderProfileOutputSerializer,
            403: error_response("not_a_rider, rider_not_approved or rider_suspended."),
        },
    )
    def post(self, request):
        return Response(RiderProfileOutputSerializer(rider_go_online(rider=self.rider())).data)


class RiderOfflineApi(RiderApi):
    @extend_schema(
        summary="Go offline: stop receiving offers",
        description="Idempotent; a suspended rider stays suspended.",
        request=None,
        responses={
            200: RiderProfileOutputSerializer,
            409: error_response("rider_on_delivery: finish the delivery first."),
        },
    )
    def post(self, request):
        return Response(RiderProfileOutputSerializer(rider_go_offline(rider=self.rider())).data)


# --- Earnings ----------------------------------------------------------------------------------


class EarningOutputSerializer(serializers.Serializer):
    order_id = serializers.UUIDField()
    amount_paise = serializers.IntegerField()
    cash_collected_paise = serializers.IntegerField(
        help_text="Cash taken from the customer on a cash-on-delivery order; owed back to ops."
    )
    created_at = serializers.DateTimeField()


MAX_EARNINGS_RANGE_DAYS = 366


class RiderEarningsApi(RiderApi):
    class FilterSerializer(serializers.Serializer):
        date_from = serializers.DateField(
            required=False, help_text="First day (YYYY-MM-DD), default: `to`."
        )
        date_to = serializers.DateField(required=False, help_text="Last day, default: today.")

        def validate(self, attrs):
            attrs.setdefault("date_to", timezone.localdate())
            attrs.setdefault("date_from", attrs["date_to"])
            days = (attrs["date_to"] - attrs["date_from"]).days
            if days < 0:
                raise serializers.ValidationError({"from": ["Must not be after `to`."]})
            if days >= MAX_EARNINGS_RANGE_DAYS:
                raise serializers.ValidationError(
                    {"from": [f"Ask for at most {MAX_EARNINGS_RANGE_DAYS} days at a time."]}
                )
            if attrs["date_to"] >= date.max:  # the period ends the next midnight
                raise serializers.ValidationError({"to": ["Must be before 9999-12-31."]})
            return attrs

    class Pagination(PageNumberPagination):
        page_size = 50

    @extend_schema(
        summary="The rider's earnings over a range of days",
        description="One entry per delivered order (RIDER_FIXED_PAY_PER_ORDER each), newest "
        "first, with the totals over the whole range. Days are whole days in the service's "
        "time zone, both ends included.",
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, required=False),
            OpenApiParameter("to", OpenApiTypes.DATE, required=False),
            OpenApiParameter("page", OpenApiTypes.INT, required=False),
        ],
        responses={
            200: inline_serializer(
                "EarningsPage",
                {
                    "from": serializers.DateField(),
                    "to": serializers.DateField(),
                    "total_paise": serializers.IntegerField(),
                    "cash_collected_paise": serializers.IntegerField(),
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": EarningOutputSerializer(many=True),
                },
            ),
            400: error_response("Bad dates (field errors on from/to)."),
            404: error_response("Invalid page: not a page number, or past the last page."),
        },
    )
    def get(self, request):
        query = {
            "date_from": request.query_params.get("from"),
            "date_to": request.query_params.get("to"),
        }
        filters = self.FilterSerializer(data={k: v for k, v in query.items() if v is not None})
        if not filters.is_valid():
            names = {"date_from": "from", "date_to": "to"}
            raise serializers.ValidationError(
                {names.get(field, field): messages for field, messages in filters.errors.items()}
            )
        period = earnings_for_rider(rider=self.rider(), **filters.validated_data)
        paginator = self.Pagination()
        page = paginator.paginate_queryset(period.entries, request, self)
        response = paginator.get_paginated_response(EarningOutputSerializer(page, many=True).data)
        response.data = {
            "from": filters.validated_data["date_from"],
            "to": filters.validated_data["date_to"],
            "total_paise": period.total_paise,
            "cash_collected_paise": period.cash_collected_paise,
            **response.data,
        }
        return response


# --- Location pings: the hot path ----------------------------------------------------------------


class RiderLocationApi(APIView):
    """POST me/location/: served as an async Django view, outside DRF's request cycle.

    Every online rider pings every few seconds. DRF's dispatch is synchronous; an async view
    that hands only the database work to a thread costs a fraction of it, and under ASGI
    core.hotpath serves this view without Django's per-request thread (docs/performance.md). So
    `dispatch` is replaced: it reads the bearer token without loading the user (the service's
    UPDATE checks the role itself), hands the ping to the service the rider WebSocket uses too
    (rider_location_ping), and renders errors with the project's exception handler. Being an
    APIView still puts it in the OpenAPI schema. Only `Authorization: Bearer` is accepted here,
    no session. As the role is checked by the UPDATE, a non-rider's malformed or stale ping is a
    400, not a 403.
    """

    authentication_classes = [JWTAuthentication]  # for the schema; dispatch checks the token

    @extend_schema(
        summary="Report the rider's position",
        description='Also accepted over the rider WebSocket as `{"type": "location", ...}`. '
        "Refused when older than RIDER_LOCATION_MAX_AGE_SECONDS (`location_stale`), more than "
        "30 s ahead of the server (`location_from_future`), or faster than RIDER_MAX_SPEED_KMH "
        "from the previous fix (`location_impossible_speed`). Resending a fix is harmless.",
        request=RiderLocationInputSerializer,
        responses={
            202: RiderLocationOutputSerializer,
            400: error_response(
                "invalid, location_stale, location_from_future, location_impossible_speed"
            ),
            403: error_response("not_a_rider (a valid fix from an account that is no rider)."),
            429: error_response("location_too_frequent: fixes closer together than allowed."),
        },
    )
    async def post(self, request):
        user_id = _bearer_user_id(request)
        answer = await rider_location_ping(user_id=user_id, data=_json_body(request))
        return JsonResponse(answer, status=status.HTTP_202_ACCEPTED)

    async def dispatch(self, request, *args, **kwargs):
        self.request = request
        try:
            if request.method != "POST":
                raise exceptions.MethodNotAllowed(request.method)
            return await self.post(request)
        except Exception as exc:
            response = api_exception_handler(exc, {"view": self, "request": request})
            if response is None:
                raise  # unexpected: Django logs it and answers a plain 500 in the error shape
            rendered = JsonResponse(response.data, status=response.status_code)
            for header in ("Retry-After", "Allow"):
                if header in response:
                    rendered[header] = response[header]
            if response.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
                rendered["Allow"] = "POST"
            if response.status_code == status.HTTP_401_UNAUTHORIZED:
                rendered["WWW-Authenticate"] = 'Bearer realm="api"'
            return rendered


def _bearer_user_id(request):
    """The user id in a valid access token; 401 without one. The user is not loaded."""
    authentication = JWTAuthentication()
    header = authentication.get_header(request)
    raw_token = authentication.get_raw_token(header) if header else None
    if raw_token is None:
        raise exceptions.NotAuthenticated()
    token = authentication.get_validated_token(raw_token)
    try:
        return token[jwt_settings.USER_ID_CLAIM]
    except KeyError:
        raise exceptions.AuthenticationFailed(code="token_not_valid") from None


def _json_body(request) -> dict:
    # As DRF's JSON parser would: another declared type (or none) is a 415, not read as JSON.
    if request.content_type != "application/json":
        raise exceptions.UnsupportedMediaType(request.content_type or "(none)")
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        # ValueError: not UTF-8, not JSON, or an integer past Python's 4300-digit limit;
        # RecursionError: nested thousands of levels deep.
        raise exceptions.ParseError("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise exceptions.ParseError("The body must be a JSON object.")
    return data
