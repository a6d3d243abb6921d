"""Payment endpoints: make a Razorpay order, verify checkout, and Razorpay's webhook."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.openapi import error_response
from orders.serializers import OrderOutputSerializer, order_output
from payments.services.checkout import payment_create, payment_verify
from payments.services.webhooks import webhook_receive


class RazorpayOrderCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        order_id = serializers.UUIDField()

    class OutputSerializer(serializers.Serializer):
        razorpay_order_id = serializers.CharField()
        key_id = serializers.CharField(help_text="Public key for Razorpay Checkout.")
        amount_paise = serializers.IntegerField()
        currency = serializers.CharField()

    @extend_schema(
        summary="Start paying an order with Razorpay",
        description="Makes (or reuses) the Razorpay order for the stored amount; receipt is our "
        "order id. Open Razorpay Checkout with it, then call verify/.",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: error_response("invalid."),
            404: error_response("Not the caller's order."),
            409: error_response("payment_not_expected: cash on delivery, paid, or cancelled."),
            502: error_response("payment_provider_error: Razorpay refused the call."),
            503: error_response("payments_unavailable, or payment_provider_unavailable."),
        },
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payment = payment_create(
            customer=request.user, order_id=serializer.validated_data["order_id"]
        )
        return Response(
            self.OutputSerializer(
                {
                    "razorpay_order_id": payment.razorpay_order_id,
                    "key_id": settings.RAZORPAY_KEY_ID,
                    "amount_paise": payment.amount_paise,
                    "currency": payment.currency,
                }
            ).data
        )


class RazorpayVerifyApi(APIView):
    class InputSerializer(serializers.Serializer):
        razorpay_order_id = serializers.CharField(max_length=64)
        razorpay_payment_id = serializers.CharField(max_length=64)
        razorpay_signature = serializers.CharField(max_length=128)

    @extend_schema(
        summary="Verify Razorpay Checkout's result",
        description="Checks the checkout signature, then Razorpay's record of the payment. "
        "A captured payment moves the order to searching_rider; an authorized one stays "
        "pending until Razorpay's capture webhook.",
        request=InputSerializer,
        responses={
            200: OrderOutputSerializer,
            400: error_response("invalid or signature_invalid."),
            404: error_response("Not the caller's payment."),
            409: error_response("payment_mismatch: amount or currency differ; refunded."),
            502: error_response("payment_provider_error: Razorpay refused the call."),
            503: error_response("payments_unavailable, or payment_provider_unavailable."),
        },
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = payment_verify(customer=request.user, **serializer.validated_data)
        return Response(order_output(order, request.user))


class RazorpayWebhookApi(APIView):
    # Authenticated by X-Razorpay-Signature over the raw body, not by a user; no session, so
    # no CSRF. request.data is never read: the signature covers the exact bytes received.
    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []

    @extend_schema(
        summary="Razorpay webhook",
        description="Signed with the webhook secret over the raw body. Stored once per "
        "X-Razorpay-Event-Id and processed by a task; a redelivery is answered 200 and ignored.",
        parameters=[
            OpenApiParameter("X-Razorpay-Signature", OpenApiTypes.STR, OpenApiParameter.HEADER),
            OpenApiParameter("X-Razorpay-Event-Id", OpenApiTypes.STR, OpenApiParameter.HEADER),
        ],
        # By media type: with no parser classes, a bare type would leave the body undocumented.
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: inline_serializer(
                "RazorpayWebhookAnswer",
                {"status": serializers.ChoiceField(choices=["accepted", "duplicate"])},
            ),
            400: error_response("signature_invalid or invalid body."),
            503: error_response("payments_unavailable: no webhook secret configured."),
        },
        auth=[],
    )
    def post(self, request):
        _, created = webhook_receive(
            raw_body=request.body,
            signature=request.headers.get("X-Razorpay-Signature", ""),
            event_id=request.headers.get("X-Razorpay-Event-Id", ""),
        )
        return Response({"status": "accepted" if created else "duplicate"})
