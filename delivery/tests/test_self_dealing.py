"""Self-dealing: one phone that books as a customer and rides as a rider never carries (nor is
paid for) its own order, and a trip must go somewhere.

The same account is the customer and the nearest rider: dispatch offers the order to the next
rider instead, ops do not see that rider among the candidates and cannot assign them by hand,
and an offer that reached them anyway cannot be accepted. A quote whose drop is next to its
pickup is refused.
"""

import pytest
from django.contrib.gis.geos import Point

from accounts.models import User
from accounts.tests.factories import UserFactory
from core.exceptions import ApiError
from delivery.models import Offer
from delivery.selectors import riders_assignable_near
from delivery.services.dispatch import dispatch_round
from delivery.services.staff_actions import order_assign_by_staff
from delivery.tests.support import accept_url, rider_client, rider_near_pickup, searching_order
from orders.errors import OrderError
from orders.models import OrderStatus
from orders.tests.factories import PICKUP
from orders.tests.fixtures import service_area  # noqa: F401 - the quote test's area
from orders.tests.support import QUOTE_URL, client_for, ops_user, quote_body

pytestmark = pytest.mark.django_db

PICKUP_POINT = Point(PICKUP["lng"], PICKUP["lat"], srid=4326)


@pytest.fixture
def own_rider():
    """The nearest rider, whose account also books as a customer."""
    rider = rider_near_pickup(100)
    User.objects.filter(pk=rider.user_id).update(is_customer=True)
    return rider


def test_dispatch_offers_a_customers_order_to_anyone_but_their_own_rider_profile(
    settings, own_rider
):
    settings.DISPATCH_OFFERS_PER_ROUND = 3
    other = rider_near_pickup(900)
    order = searching_order(customer=own_rider.user)

    dispatch_round(order_id=order.pk)

    assert set(Offer.objects.filter(order=order).values_list("rider_id", flat=True)) == {other.pk}


def test_ops_neither_see_nor_can_assign_the_customers_own_rider_profile(own_rider):
    order = searching_order(customer=own_rider.user)
    staff = ops_user("dispatcher")

    candidates = riders_assignable_near(point=PICKUP_POINT, customer_id=order.customer_id)
    assert own_rider.pk not in {rider.pk for rider in candidates}
    with pytest.raises(ApiError) as refused:
        order_assign_by_staff(order_id=order.pk, rider_id=own_rider.pk, staff=staff)
    assert refused.value.kind is OrderError.RIDER_IS_CUSTOMER
    order.refresh_from_db()
    assert (order.status, order.rider_id) == (OrderStatus.SEARCHING_RIDER, None)


def test_an_offer_of_ones_own_order_cannot_be_accepted(own_rider):
    # given an offer that reached the customer's own rider profile (made before this rule)
    order = searching_order(customer=own_rider.user)
    offer = Offer.objects.create(
        order=order,
        rider=own_rider,
        round_number=1,
        distance_m=100,
        pay_paise=5000,
        expires_at=order.created_at.replace(year=order.created_at.year + 1),
    )

    answer = rider_client(own_rider).post(accept_url(offer))

    assert answer.status_code == 409, answer.content
    assert answer.json()["error"]["code"] == "rider_is_customer"
    order.refresh_from_db()
    assert (order.status, order.rider_id) == (OrderStatus.SEARCHING_RIDER, None)


@pytest.mark.usefixtures("service_area")
def test_a_trip_whose_drop_is_next_to_its_pickup_is_not_quoted(settings):
    settings.ORDER_MIN_DISTANCE_M = 200
    client = client_for(UserFactory())
    near = {**PICKUP, "lat": PICKUP["lat"] + 100 / 111_320, "address": "Next door"}

    refused = client.post(QUOTE_URL, quote_body(drop=near), format="json")

    assert refused.status_code == 400, refused.content
    error = refused.json()["error"]
    assert error["code"] == "trip_too_short" and "200 m" in error["fields"]["drop"][0]
