"""Helpers for the dispatch tests: riders placed around the pickup, orders searching for one."""

from rest_framework.test import APIClient

from orders.models import Order
from orders.tests.factories import PICKUP, OrderFactory
from riders.models import Rider
from riders.tests.factories import RiderFactory, located
from riders.tests.support import as_user

METRES_PER_DEGREE_LAT = 111_320


def north_of_pickup(metres: float) -> tuple[float, float]:
    return PICKUP["lat"] + metres / METRES_PER_DEGREE_LAT, PICKUP["lng"]


def rider_near_pickup(
    metres: float, *, status: str = Rider.Status.ONLINE, seconds_ago: float = 0, **fields
) -> Rider:
    """A rider `metres` north of the pickup, located `seconds_ago`; online and approved unless
    told otherwise."""
    lat, lng = north_of_pickup(metres)
    rider = RiderFactory(status=status, **fields)
    return located(rider, lat=lat, lng=lng, seconds_ago=seconds_ago)


def searching_order(**fields) -> Order:
    return OrderFactory(**fields)  # the factory's default status is searching_rider


def rider_client(rider: Rider) -> APIClient:
    return as_user(APIClient(), rider.user)


def accept_url(offer) -> str:
    return f"/api/v1/riders/offers/{offer.pk}/accept/"


def decline_url(offer) -> str:
    return f"/api/v1/riders/offers/{offer.pk}/decline/"


OFFERS_URL = "/api/v1/riders/me/offers/"
