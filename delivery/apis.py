"""Delivery endpoints: the tracking snapshot, and the steps only the order's rider takes."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApiError
from core.openapi import error_response
from delivery.models import Offer
from delivery.selectors import offers_live_for_rider, order_for_watcher, order_tracking
from delivery.services.dispatch import offer_accept, offer_decline
from delivery.services.steps import (
    delivery_arrive_drop,
    delivery_arrive_pickup,
    delivery_complete,
    delivery_fail,
    delivery_pick_up,
)
from orders.errors import OrderError
from orders.models import OrderStatus
from orders.selectors import cash_to_collect_paise, place
from orders.serializers import PlaceOutputSerializer
from riders.permissions import IsRider, RiderApi
from riders.services import rider_get_or_create


class RiderPositionSerializer(serializers.Serializer):
    lat = serializers.FloatField()
    lng = serializers.FloatField()
    updated_at = serializers.DateTimeField(help_text="When the rider's device took the fix.")


class TrackingOutputSerializer(serializers.Serializer):
    order_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    seq = serializers.IntegerField(
        help_text="The last event number sent on /ws/delivery/<order_id>/. A socket event with a "
        "higher number than this one plus one means events were missed: read this again."
    )
    rider = RiderPositionSerializer(
        allow_null=True, help_text="The rider's last position, while a rider carries the order."
    )
    eta_seconds = serializers.IntegerField(
        allow_null=True, help_text="Rough time to the drop (straight line); null without a rider."
    )
    pickup = PlaceOutputSerializer()
    drop = PlaceOutputSerializer()
    cash_to_collect_paise = serializers.IntegerField(
        help_text="Cash the rider collects at the door (cash on delivery), else 0."
    )
    delivery_code_tries_left = serializers.IntegerField()


def tracking_output(order) -> dict:
    tracking = order_tracking(order)
    quote = order.quote
    rider = None
    if tracking.rider_point is not None:
        rider = {
            "lat": tracking.rider_point.y,
            "lng": tracking.rider_point.x,
            "updated_at": tracking.rider_seen_at,
        }
    return TrackingOutputSerializer(
        {
            "order_id": order.pk,
            "status": order.status,
            "seq": order.tracking_seq,
            "rider": rider,
            "eta_seconds": tracking.eta_seconds,
            "pickup": place(quote.pickup_location, quote.pickup_address),
            "drop": place(quote.drop_location, quote.drop_address),
            "cash_to_collect_paise": cash_to_collect_paise(order),
            "delivery_code_tries_left": max(
                0, settings.DELIVERY_CODE_MAX_ATTEMPTS - order.delivery_code_attempts
            ),
        }
    ).data


def _watched(request, order_id):
    order = order_for_watcher(user=request.user, order_id=order_id, with_quote=True)
    if order is None:
        raise ApiError(OrderError.NOT_FOUND)
    return order


class DeliveryTrackingApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="The tracking snapshot of an order",
        description="For the order's customer, its rider and ops. Read it when the app opens "
        "the tracking screen and whenever the socket's `seq` jumps; the socket "
        "`/ws/delivery/<order_id>/` then streams status and location events.",
        responses={
            200: TrackingOutputSerializer,
            404: error_response("No such order, or not yours to watch."),
        },
    )
    def get(self, request, order_id):
        return Response(tracking_output(_watched(request, order_id)))


_STEP_ERRORS = {
    404: error_response("No such order assigned to you."),
}


class DeliveryStepApi(APIView):
    """A step with no body: the service moves the order, the answer is the new snapshot."""

    permission_classes = [IsAuthenticated, IsRider]
    step = None

    def post(self, request, order_id):
        rider = rider_get_or_create(user=request.user)
        type(self).step(order_id=order_id, rider=rider)
        return Response(tracking_output(_watched(request, order_id)))


_GEOFENCE_ERRORS = {
    **_STEP_ERRORS,
    409: error_response(
        "invalid_transition; location_required: no position from the last "
        "RIDER_LOCATION_MAX_AGE_SECONDS; outside_geofence: farther than DELIVERY_GEOFENCE_M."
    ),
}


class ArrivedPickupApi(DeliveryStepApi):
    step = delivery_arrive_pickup

    @extend_schema(
        summary="The rider arrived at the pickup",
        description="Checked against the rider's last fresh position: within "
        "DELIVERY_GEOFENCE_M (200 m) of the pickup.",
        request=None,
        responses={200: TrackingOutputSerializer, **_GEOFENCE_ERRORS},
    )
    def post(self, request, order_id):
        return super().post(request, order_id)


class PickedUpApi(DeliveryStepApi):
    step = delivery_pick_up

    @extend_schema(
        summary="The rider has the package",
        description="After arriving at the pickup. From here on the customer cannot cancel.",
        request=None,
        responses={
            200: TrackingOutputSerializer,
            **_STEP_ERRORS,
            409: error_response("invalid_transition"),
        },
    )
    def post(self, request, order_id):
        return super().post(request, order_id)


class ArrivedDropApi(DeliveryStepApi):
    step = delivery_arrive_drop

    @extend_schema(
        summary="The rider arrived at the drop",
        description="Checked against the rider's last fresh position, like the pickup.",
        request=None,
        responses={200: TrackingOutputSerializer, **_GEOFENCE_ERRORS},
    )
    def post(self, request, order_id):
        return super().post(request, order_id)


class DeliverApi(APIView):
    permission_classes = [IsAuthenticated, IsRider]

    class InputSerializer(serializers.Serializer):
        delivery_code = serializers.RegexField(
            r"^[0-9]{4}$",
            error_messages={"invalid": "The delivery code is 4 digits."},
            help_text="The code the customer's app shows; they read it out to the rider.",
        )

    @extend_schema(
        summary="Hand over the package: the order is delivered",
        description="Needs the customer's 4-digit delivery code. A wrong code counts against "
        "DELIVERY_CODE_MAX_ATTEMPTS (5); after that only ops can unlock it. The rider is "
        "credited RIDER_FIXED_PAY_PER_ORDER once per delivered order.",
        request=InputSerializer,
        responses={
            200: TrackingOutputSerializer,
            400: error_response("invalid (not 4 digits) or delivery_code_invalid (tries left)."),
            **_STEP_ERRORS,
            409: error_response("invalid_transition or delivery_code_locked."),
        },
    )
    def post(self, request, order_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rider = rider_get_or_create(user=request.user)
        delivery_complete(
            order_id=order_id,
            rider=rider,
            delivery_code=serializer.validated_data["delivery_code"],
        )
        return Response(tracking_output(_watched(request, order_id)))


class FailApi(APIView):
    permission_classes = [IsAuthenticated, IsRider]

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            max_length=500, help_text="What went wrong, e.g. customer not reachable."
        )

    @extend_schema(
        summary="The delivery cannot be completed",
        description="Ends the order as failed with the rider's reason; the rider is free again.",
        request=InputSerializer,
        responses={
            200: TrackingOutputSerializer,
            400: error_response("A reason is required."),
            **_STEP_ERRORS,
            409: error_response("invalid_transition"),
        },
    )
    def post(self, request, order_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rider = rider_get_or_create(user=request.user)
        delivery_fail(order_id=order_id, rider=rider, reason=serializer.validated_data["reason"])
        return Response(tracking_output(_watched(request, order_id)))


# --- Offers ------------------------------------------------------------------------------------


class OfferOutputSerializer(serializers.Serializer):
    """An offer as the rider app shows it: the trip and the pay, nothing about the customer."""

    id = serializers.UUIDField()
    order_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Offer.Status.choices)
    pickup = serializers.SerializerMethodField()
    drop = serializers.SerializerMethodField()
    distance_m = serializers.IntegerField(help_text="From the rider to the pickup when offered.")
    pay_paise = serializers.IntegerField()
    cash_to_collect_paise = serializers.SerializerMethodField(
        help_text="Cash the rider collects from the customer (cash on delivery), else 0."
    )
    expires_at = serializers.DateTimeField()

    def get_cash_to_collect_paise(self, offer) -> int:
        return cash_to_collect_paise(offer.order)

    @extend_schema_field(PlaceOutputSerializer)
    def get_pickup(self, offer) -> dict:
        quote = offer.order.quote
        return place(quote.pickup_location, quote.pickup_address)

    @extend_schema_field(PlaceOutputSerializer)
    def get_drop(self, offer) -> dict:
        quote = offer.order.quote
        return place(quote.drop_location, quote.drop_address)


class RiderOffersApi(RiderApi):
    @extend_schema(
        summary="The rider's live offers",
        description="Pending offers not yet expired, soonest to expire first. The same offers "
        'arrive on the rider WebSocket as `{"type": "offer", ...}`.',
        responses={
            200: OfferOutputSerializer(many=True),
        },
    )
    def get(self, request):
        offers = offers_live_for_rider(rider=self.rider())
        return Response(OfferOutputSerializer(offers, many=True).data)


class RiderOfferAcceptApi(RiderApi):
    @extend_schema(
        summary="Accept an offer: take the order",
        description="Atomic: of all riders accepting one order, exactly one wins; the order is "
        "assigned to them and the rider is on a delivery. Everyone else gets 409.",
        request=None,
        responses={
            200: OfferOutputSerializer,
            404: error_response("not_found: no such offer for this rider."),
            409: error_response(
                "offer_not_available: taken, expired, withdrawn or answered already."
            ),
        },
    )
    def post(self, request, offer_id):
        offer = offer_accept(offer_id=offer_id, rider=self.rider())
        return Response(OfferOutputSerializer(offer).data)


class RiderOfferDeclineApi(RiderApi):
    @extend_schema(
        summary="Decline an offer",
        description="When no other offer of the order is pending, the next round of offers "
        "starts at once.",
        request=None,
        responses={
            200: OfferOutputSerializer,
            404: error_response("not_found: no such offer for this rider."),
            409: error_response("offer_not_available: no longer pending."),
        },
    )
    def post(self, request, offer_id):
        offer = offer_decline(offer_id=offer_id, rider=self.rider())
        return Response(OfferOutputSerializer(offer).data)
