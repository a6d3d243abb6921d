"""Order endpoints: quotes, booking, the caller's orders, cancelling and rating."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from core.openapi import error_response
from core.views import PublicApi
from orders.models import PaymentMethod
from orders.selectors import (
    order_get_for_user,
    order_list_for_user,
    service_area_list_active,
)
from orders.serializers import (
    BreakdownLineSerializer,
    OrderOutputSerializer,
    PlaceInputSerializer,
    order_output,
)
from orders.services import Place, order_cancel, order_create, order_rate, quote_create
from orders.state import Actor
from orders.throttles import OrderCreateThrottle, QuoteThrottle

# --- APIs -----------------------------------------------------------------------------------


class QuoteCreateApi(APIView):
    throttle_classes = [QuoteThrottle]

    class InputSerializer(serializers.Serializer):
        pickup = PlaceInputSerializer()
        drop = PlaceInputSerializer()
        package = inline_serializer(
            "QuotePackageInput",
            {
                "description": serializers.CharField(max_length=200),
                "weight_grams": serializers.IntegerField(
                    min_value=1, max_value=settings.ORDER_MAX_WEIGHT_GRAMS
                ),
            },
        )

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        distance_m = serializers.IntegerField()
        currency = serializers.CharField()
        total_paise = serializers.IntegerField()
        breakdown = BreakdownLineSerializer(many=True)
        expires_at = serializers.DateTimeField()

    @extend_schema(
        summary="Price a delivery",
        description="Distance from PostGIS, prices from the service area's tariff. Both places "
        "must lie in one active service area. Book it before `expires_at`.",
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            400: error_response("invalid (field errors), outside_service_area or trip_too_short."),
            403: error_response("not_customer."),
            429: error_response("throttled: too many quotes from this account (Retry-After)."),
        },
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        quote = quote_create(
            customer=request.user,
            pickup=Place(**data["pickup"]),
            drop=Place(**data["drop"]),
            package_description=data["package"]["description"],
            weight_grams=data["package"]["weight_grams"],
        )
        return Response(self.OutputSerializer(quote).data, status=status.HTTP_201_CREATED)


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Any unique string up to 100 characters. A retry with the same key and body "
    "returns the order the first request made (200); with a different body, 422.",
)


class OrderListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        quote_id = serializers.UUIDField()
        payment_method = serializers.ChoiceField(choices=PaymentMethod.choices)
        notes = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    class Pagination(PageNumberPagination):
        page_size = 20

    def get_throttles(self):
        return [OrderCreateThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        summary="The caller's orders (ops with the view permission: all)",
        description="Newest first, 20 a page; `next` is the next page's URL or null.",
        parameters=[OpenApiParameter("page", OpenApiTypes.INT, required=False)],
        responses={
            200: inline_serializer(
                "OrderPage",
                {
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": OrderOutputSerializer(many=True),
                },
            ),
            404: error_response("Invalid page: not a page number, or past the last page."),
        },
    )
    def get(self, request):
        paginator = self.Pagination()
        page = paginator.paginate_queryset(order_list_for_user(user=request.user), request, self)
        return paginator.get_paginated_response([order_output(o, request.user) for o in page])

    @extend_schema(
        summary="Book a delivery from a quote",
        description="The amount is the quote's. Cash on delivery goes straight to "
        "searching_rider; razorpay waits in payment_pending for /payments/razorpay/.",
        parameters=[IDEMPOTENCY_HEADER],
        request=InputSerializer,
        responses={
            201: OrderOutputSerializer,
            200: OrderOutputSerializer,
            400: error_response("invalid or quote_expired (field errors)."),
            403: error_response("not_customer."),
            409: error_response("quote_already_used."),
            422: error_response("idempotency_key_reused."),
            429: error_response(
                "too_many_live_orders (ORDER_MAX_LIVE_PER_CUSTOMER unfinished already), or "
                "throttled: too many bookings from this account. Retry-After says when."
            ),
            503: error_response("payments_unavailable (razorpay without keys)."),
        },
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 100 or (key and not key.isprintable()):
            raise serializers.ValidationError(
                {"Idempotency-Key": ["Up to 100 printable characters."]}
            )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order, created = order_create(
            customer=request.user, idempotency_key=key or None, **serializer.validated_data
        )
        if not created:  # a retry: the order as it is now (it may have a rider by then)
            order = order_get_for_user(user=request.user, order_id=order.pk)
        return Response(
            order_output(order, request.user),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class OrderDetailApi(APIView):
    @extend_schema(
        summary="One of the caller's orders",
        description="`delivery_code` is shown to the customer while the order is live: they "
        "read it out to the rider at the door. For the rider's position, use delivery/.",
        responses={
            200: OrderOutputSerializer,
            404: error_response("not_found: no such order, or not the caller's."),
        },
    )
    def get(self, request, order_id):
        order = order_get_for_user(user=request.user, order_id=order_id)
        return Response(order_output(order, request.user))


class OrderCancelApi(APIView):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    @extend_schema(
        summary="Cancel an order",
        description="Customers: free until pickup (also after a rider is assigned); a paid "
        "order is refunded. Ops with orders.cancel_any_order: any live order.",
        request=InputSerializer,
        responses={
            200: OrderOutputSerializer,
            400: error_response("invalid."),
            403: error_response("permission_denied (ops without cancel_any_order)."),
            404: error_response("Not the caller's order."),
            409: error_response("invalid_transition (after pickup, or already ended)."),
        },
    )
    def post(self, request, order_id):
        order = order_get_for_user(user=request.user, order_id=order_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        is_customer = order.customer_id == request.user.pk
        actor = Actor.customer(request.user) if is_customer else Actor.staff(request.user)
        order_cancel(order_id=order.pk, actor=actor, reason=serializer.validated_data["reason"])
        order = order_get_for_user(user=request.user, order_id=order.pk)
        return Response(order_output(order, request.user))


class OrderRatingApi(APIView):
    class InputSerializer(serializers.Serializer):
        stars = serializers.IntegerField(min_value=1, max_value=5)
        comment = serializers.CharField(
            max_length=1000, required=False, allow_blank=True, default=""
        )

    class OutputSerializer(serializers.Serializer):
        stars = serializers.IntegerField()
        comment = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        summary="Rate a delivered order (once)",
        description="1 to 5 stars and an optional comment, by the order's customer.",
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            400: error_response("invalid."),
            404: error_response("Not the caller's order."),
            409: error_response("order_not_delivered or already_rated."),
        },
    )
    def post(self, request, order_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rating = order_rate(customer=request.user, order_id=order_id, **serializer.validated_data)
        return Response(self.OutputSerializer(rating).data, status=status.HTTP_201_CREATED)


# --- The apps' bootstrap configuration (public) ---------------------------------------------


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
        websocket_url = serializers.CharField(
            allow_null=True,
            help_text="The origin to open the sockets on (ws:// or wss://), when they are served "
            "from a host of their own; null: this API's host. Sockets are at "
            "<origin><websocket_path>delivery/<order id>/ and so on.",
        )
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

    @extend_schema(
        summary="Bootstrap configuration for the apps",
        description="Public. Read at start-up: OTP length, the rider's pay, Razorpay's public "
        "key, where the sockets are, the service areas.",
        responses=OutputSerializer,
    )
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
                "websocket_url": settings.SOCKETS_URL or None,
                "max_live_orders": settings.ORDER_MAX_LIVE_PER_CUSTOMER,
                "pricing": {
                    "base_fare_paise": settings.PRICING_BASE_FARE_PAISE,
                    "per_km_paise": settings.PRICING_PER_KM_PAISE,
                },
                "service_areas": areas,
            }
        )
