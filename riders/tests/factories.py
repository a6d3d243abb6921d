"""Factories for riders: rider-role users, their profiles, and access tokens for them."""

from datetime import timedelta

import factory
from django.contrib.gis.geos import Point
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from accounts.tests.factories import UserFactory, phone_number
from riders.models import Rider


class RiderUserFactory(UserFactory):
    phone = factory.Sequence(lambda n: phone_number(30_000_000 + n))
    is_customer = False
    is_rider = True


class RiderFactory(factory.django.DjangoModelFactory):
    """An approved, offline rider with no position yet (see `located`)."""

    class Meta:
        model = Rider

    user = factory.SubFactory(RiderUserFactory)
    vehicle_type = Rider.VehicleType.MOTORCYCLE
    vehicle_number = factory.Sequence(lambda n: f"KA01AB{n:04d}")
    approved = True


def located(rider: Rider, *, lat: float, lng: float, seconds_ago: float = 0) -> Rider:
    """Gives a rider a latest position, as a ping `seconds_ago` would have."""
    rider.last_location = Point(lng, lat, srid=4326)
    rider.last_location_at = timezone.now() - timedelta(seconds=seconds_ago)
    rider.save(update_fields=["last_location", "last_location_at"])
    return rider


def access_token(user) -> str:
    """An access JWT as the login endpoint would issue it."""
    return str(AccessToken.for_user(user))
