"""Factories for orders: a service area around central Bengaluru, quotes and orders in any state.

API tests book orders through the API; these put orders straight into a state for the state
machine and admin tests.
"""

from datetime import timedelta

import factory
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from django.utils import timezone

from accounts.tests.factories import UserFactory
from orders.models import (
    CARRYING_STATUSES,
    Order,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    Quote,
    ServiceArea,
)
from orders.services import delivery_code_hmac
from riders.models import Rider

# lng 77.50..77.70, lat 12.90..13.10
AREA = MultiPolygon(
    Polygon(((77.50, 12.90), (77.70, 12.90), (77.70, 13.10), (77.50, 13.10), (77.50, 12.90))),
    srid=4326,
)
PICKUP = {"lat": 12.9716, "lng": 77.5946, "address": "MG Road"}
DROP = {"lat": 12.9352, "lng": 77.6245, "address": "Koramangala"}
OUTSIDE = {"lat": 12.2958, "lng": 76.6394, "address": "Mysuru"}


class ServiceAreaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceArea
        django_get_or_create = ["name"]

    name = "Central Bengaluru"
    area = AREA
    is_active = True


class RiderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rider

    user = factory.SubFactory(UserFactory, is_customer=False, is_rider=True)
    approved = True
    status = Rider.Status.ONLINE  # free to be assigned
    vehicle_number = factory.Sequence(lambda n: f"KA01AB{1000 + n}")


class QuoteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Quote

    customer = factory.SubFactory(UserFactory)
    service_area = factory.SubFactory(ServiceAreaFactory)
    pickup_location = Point(PICKUP["lng"], PICKUP["lat"], srid=4326)
    pickup_address = PICKUP["address"]
    drop_location = Point(DROP["lng"], DROP["lat"], srid=4326)
    drop_address = DROP["address"]
    package_description = "Documents"
    package_weight_grams = 500
    distance_m = 5000
    total_paise = 8000
    breakdown = factory.LazyAttribute(
        lambda o: [{"code": "base_fare", "label": "Base fare", "amount_paise": o.total_paise}]
    )
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=10))


_NEEDS_RIDER = {
    OrderStatus.RIDER_ASSIGNED,
    OrderStatus.AT_PICKUP,
    OrderStatus.PICKED_UP,
    OrderStatus.AT_DROPOFF,
    OrderStatus.DELIVERED,
    OrderStatus.FAILED,
}


def _rider_status(order_status: str) -> str:
    """A rider carrying the order is on the delivery; after it ended they are free again."""
    carrying = order_status in CARRYING_STATUSES
    return Rider.Status.ON_DELIVERY if carrying else Rider.Status.ONLINE


class OrderFactory(factory.django.DjangoModelFactory):
    """An order already in `status` (written directly, not through the state machine)."""

    class Meta:
        model = Order
        skip_postgeneration_save = True

    quote = factory.SubFactory(QuoteFactory)
    customer = factory.SelfAttribute("quote.customer")
    amount_paise = factory.SelfAttribute("quote.total_paise")
    payment_method = PaymentMethod.COD
    payment_status = factory.LazyAttribute(
        lambda o: (
            PaymentStatus.NONE if o.payment_method == PaymentMethod.COD else PaymentStatus.PENDING
        )
    )
    status = OrderStatus.SEARCHING_RIDER
    delivery_code = "4321"
    rider = factory.LazyAttribute(
        lambda o: RiderFactory(status=_rider_status(o.status)) if o.status in _NEEDS_RIDER else None
    )

    @factory.post_generation
    def code_hmac(obj, create, extracted, **kwargs):
        obj.delivery_code_hmac = delivery_code_hmac(order_id=obj.pk, code=obj.delivery_code)
        if create:
            obj.save(update_fields=["delivery_code_hmac"])
