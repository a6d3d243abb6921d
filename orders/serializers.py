"""The order's shapes in the API, shared by every endpoint that answers with an order or a
place (orders, payments, delivery)."""

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from accounts.models import User
from accounts.phone import mask_phone
from core.fields import FiniteFloatField
from orders.models import Order, OrderStatus, PaymentMethod, PaymentStatus
from orders.selectors import order_delivery_code_for_user, place


class PlaceInputSerializer(serializers.Serializer):
    lat = FiniteFloatField(min_value=-90, max_value=90)
    lng = FiniteFloatField(min_value=-180, max_value=180)
    address = serializers.CharField(max_length=300)


class PlaceOutputSerializer(serializers.Serializer):
    lat = serializers.FloatField()
    lng = serializers.FloatField()
    address = serializers.CharField()


class BreakdownLineSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()
    amount_paise = serializers.IntegerField()


class RiderOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    phone = serializers.CharField(help_text="Masked, e.g. +91******5678.")
    vehicle_type = serializers.CharField()
    vehicle_number = serializers.CharField()


class OrderOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    payment_status = serializers.ChoiceField(choices=PaymentStatus.choices)
    payment_method = serializers.ChoiceField(choices=PaymentMethod.choices)
    amount_paise = serializers.IntegerField()
    currency = serializers.CharField()
    pickup = PlaceOutputSerializer()
    drop = PlaceOutputSerializer()
    package = inline_serializer(
        "OrderPackage",
        {"description": serializers.CharField(), "weight_grams": serializers.IntegerField()},
    )
    distance_m = serializers.IntegerField()
    breakdown = BreakdownLineSerializer(many=True)
    notes = serializers.CharField()
    cancelled_late = serializers.BooleanField(
        help_text="Cancelled by the customer once the rider was at the pickup (a fee may apply)."
    )
    rider = RiderOutputSerializer(allow_null=True)
    delivery_code = serializers.CharField(
        allow_null=True, help_text="Only for the order's customer, while the order is live."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def order_output(order: Order, user: User) -> dict:
    quote = order.quote
    rider = None
    if order.rider_id:
        rider = {
            "name": order.rider.user.name,
            "phone": mask_phone(order.rider.user.phone),
            "vehicle_type": order.rider.vehicle_type,
            "vehicle_number": order.rider.vehicle_number,
        }
    return OrderOutputSerializer(
        {
            "id": order.id,
            "status": order.status,
            "payment_status": order.payment_status,
            "payment_method": order.payment_method,
            "amount_paise": order.amount_paise,
            "currency": order.currency,
            "pickup": place(quote.pickup_location, quote.pickup_address),
            "drop": place(quote.drop_location, quote.drop_address),
            "package": {
                "description": quote.package_description,
                "weight_grams": quote.package_weight_grams,
            },
            "distance_m": quote.distance_m,
            "breakdown": quote.breakdown,
            "notes": order.notes,
            "cancelled_late": order.cancelled_late,
            "rider": rider,
            "delivery_code": order_delivery_code_for_user(order=order, user=user),
            "created_at": order.created_at,
            "updated_at": order.updated_at,
        }
    ).data
