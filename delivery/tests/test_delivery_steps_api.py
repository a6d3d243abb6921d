"""The delivery steps through the HTTP API: arrival at the pickup and the drop (geofenced),
pickup, handing over with the customer's code (credited once), failing, and the tracking
snapshot each answer carries.

Orders are put straight into a state by OrderFactory (delivery code 4321, a rider on carrying
and ended orders); riders are placed with `located`. Celery tasks run inline (conftest).
"""

from dataclasses import dataclass
from datetime import datetime

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from core.exceptions import ApiError
from delivery.services.staff_actions import delivery_code_attempts_reset
from orders.models import Order, OrderEvent, OrderStatus, PaymentMethod, PaymentStatus
from orders.state import Action, Actor, order_transition
from orders.tests.factories import DROP, PICKUP, OrderFactory
from orders.tests.support import ops_user
from riders.models import Earning, Rider
from riders.tests.factories import RiderFactory, located
from riders.tests.support import as_user

pytestmark = pytest.mark.django_db

METRES_PER_DEGREE_LAT = 111_320
RIGHT_CODE = "4321"  # OrderFactory's delivery code
WRONG_CODE = "1111"


def url(order, step: str = "") -> str:
    return f"/api/v1/delivery/{order.pk}/" + (f"{step}/" if step else "")


def client_of(user) -> APIClient:
    return as_user(APIClient(), user)


def north_of(place: dict, metres: float) -> tuple[float, float]:
    return place["lat"] + metres / METRES_PER_DEGREE_LAT, place["lng"]


def put_rider(rider: Rider, place: dict, *, metres: float = 0, seconds_ago: float = 0) -> Rider:
    """The rider's last fix `metres` north of `place`, taken `seconds_ago`."""
    lat, lng = north_of(place, metres)
    return located(rider, lat=lat, lng=lng, seconds_ago=seconds_ago)


def metres_between(lat_lng: tuple[float, float], place: dict) -> float:
    """Geodesic distance as PostGIS measures geography, computed here independently."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ST_Distance(ST_MakePoint(%s, %s)::geography, ST_MakePoint(%s, %s)::geography)",
            [lat_lng[1], lat_lng[0], place["lng"], place["lat"]],
        )
        return cursor.fetchone()[0]


def post(order, step: str, user, body: dict | None = None):
    return client_of(user).post(url(order, step), body or {}, format="json")


def error(response) -> dict:
    return response.json()["error"]


def reloaded(order) -> Order:
    return Order.objects.get(pk=order.pk)


@dataclass(frozen=True)
class Arrival:
    """One geofenced step: the order's status before and after it, and where it is checked."""

    step: str
    from_status: str
    to_status: str
    place: dict
    place_name: str


PICKUP_ARRIVAL = Arrival(
    "arrived-pickup", OrderStatus.RIDER_ASSIGNED, OrderStatus.AT_PICKUP, PICKUP, "pickup"
)
DROP_ARRIVAL = Arrival("arrived-drop", OrderStatus.PICKED_UP, OrderStatus.AT_DROPOFF, DROP, "drop")
ARRIVALS = pytest.mark.parametrize("arrival", [PICKUP_ARRIVAL, DROP_ARRIVAL], ids=lambda a: a.step)

# Every rider step with a body it would accept.
STEPS = [
    ("arrived-pickup", {}),
    ("picked-up", {}),
    ("arrived-drop", {}),
    ("deliver", {"delivery_code": RIGHT_CODE}),
    ("fail", {"reason": "Customer not reachable"}),
]
EVERY_STEP = pytest.mark.parametrize(("step", "body"), STEPS, ids=[s for s, _ in STEPS])


def assert_unchanged(order, *, status: str, seq: int = 0) -> None:
    order = reloaded(order)
    assert (order.status, order.tracking_seq) == (status, seq)
    assert not OrderEvent.objects.filter(order=order).exists()
    assert not Earning.objects.filter(order=order).exists()


# --- The happy path ------------------------------------------------------------------------------


def test_the_rider_takes_an_assigned_order_step_by_step_to_delivered(settings):
    # given an order assigned to a rider standing at the pickup
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    rider = put_rider(order.rider, PICKUP)
    assert order.tracking_seq == 0

    # when the rider arrives, picks up, rides to the drop, arrives and hands over
    answers = []
    for step, body in [("arrived-pickup", {}), ("picked-up", {})]:
        answers.append(post(order, step, rider.user, body))
    put_rider(rider, DROP)
    for step, body in [("arrived-drop", {}), ("deliver", {"delivery_code": RIGHT_CODE})]:
        answers.append(post(order, step, rider.user, body))

    # then every step answers 200 with the snapshot in the new status, seq one higher each time
    assert [a.status_code for a in answers] == [200, 200, 200, 200], [a.content for a in answers]
    bodies = [a.json() for a in answers]
    assert [b["status"] for b in bodies] == ["at_pickup", "picked_up", "at_dropoff", "delivered"]
    assert [b["seq"] for b in bodies] == [1, 2, 3, 4]
    assert {b["order_id"] for b in bodies} == {str(order.pk)}
    # and the database agrees, with one event per step, all by the rider
    order = reloaded(order)
    assert (order.status, order.tracking_seq) == (OrderStatus.DELIVERED, 4)
    events = list(OrderEvent.objects.filter(order=order).order_by("created_at", "id"))
    assert [(e.action, e.from_status, e.to_status) for e in events] == [
        ("arrive_pickup", "rider_assigned", "at_pickup"),
        ("pick_up", "at_pickup", "picked_up"),
        ("arrive_drop", "picked_up", "at_dropoff"),
        ("deliver", "at_dropoff", "delivered"),
    ]
    assert {(e.actor_kind, e.actor_id) for e in events} == {("rider", rider.user_id)}
    # the plain code is gone once delivered, and the rider was paid
    assert order.delivery_code == ""
    earning = Earning.objects.get(order=order)
    assert (earning.rider_id, earning.amount_paise) == (
        rider.pk,
        settings.RIDER_FIXED_PAY_PER_ORDER_PAISE,
    )


# --- Geofence ------------------------------------------------------------------------------------


@ARRIVALS
def test_arrival_is_refused_500_m_away_naming_the_distance(arrival):
    # given a fresh fix about 500 m from the place
    order = OrderFactory(status=arrival.from_status)
    rider = put_rider(order.rider, arrival.place, metres=500)
    distance = metres_between(north_of(arrival.place, 500), arrival.place)
    assert 480 < distance < 520

    # when
    response = post(order, arrival.step, rider.user)

    # then 409 outside_geofence, telling how far and how near to come; nothing moved
    assert response.status_code == 409
    assert error(response)["code"] == "outside_geofence"
    message = error(response)["message"]
    assert message == (
        f"You are {round(distance)} m from the {arrival.place_name}; come within 200 m "
        "and try again."
    )
    assert_unchanged(order, status=arrival.from_status)


@ARRIVALS
def test_arrival_is_accepted_150_m_away(arrival):
    order = OrderFactory(status=arrival.from_status)
    rider = put_rider(order.rider, arrival.place, metres=150)

    response = post(order, arrival.step, rider.user)

    assert response.status_code == 200, response.content
    assert response.json()["status"] == arrival.to_status
    assert reloaded(order).status == arrival.to_status


@ARRIVALS
def test_arrival_just_outside_the_geofence_is_refused(arrival):
    # given a fix some 210 m away (200 m is the fence)
    order = OrderFactory(status=arrival.from_status)
    rider = put_rider(order.rider, arrival.place, metres=212)
    assert 200 < metres_between(north_of(arrival.place, 212), arrival.place) < 215

    response = post(order, arrival.step, rider.user)

    assert response.status_code == 409
    assert error(response)["code"] == "outside_geofence"
    assert_unchanged(order, status=arrival.from_status)


@ARRIVALS
def test_arrival_without_any_position_needs_a_location(arrival):
    # given a rider who never sent a fix
    order = OrderFactory(status=arrival.from_status)
    assert order.rider.last_location is None

    response = post(order, arrival.step, order.rider.user)

    assert response.status_code == 409
    assert error(response)["code"] == "location_required"
    assert_unchanged(order, status=arrival.from_status)


@ARRIVALS
def test_arrival_with_a_position_older_than_the_max_age_needs_a_location(arrival, settings):
    # given a fix right at the place, but older than RIDER_LOCATION_MAX_AGE_SECONDS
    order = OrderFactory(status=arrival.from_status)
    rider = put_rider(
        order.rider, arrival.place, seconds_ago=settings.RIDER_LOCATION_MAX_AGE_SECONDS + 5
    )

    response = post(order, arrival.step, rider.user)

    assert response.status_code == 409
    assert error(response)["code"] == "location_required"
    assert_unchanged(order, status=arrival.from_status)


@ARRIVALS
def test_arrival_with_a_position_a_little_younger_than_the_max_age_is_accepted(arrival, settings):
    order = OrderFactory(status=arrival.from_status)
    rider = put_rider(
        order.rider, arrival.place, seconds_ago=settings.RIDER_LOCATION_MAX_AGE_SECONDS - 10
    )

    response = post(order, arrival.step, rider.user)

    assert response.status_code == 200, response.content
    assert reloaded(order).status == arrival.to_status


def test_the_pickup_geofence_is_measured_from_the_pickup_not_the_drop():
    # given a rider standing at the drop of an order not yet picked up
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    rider = put_rider(order.rider, DROP)

    response = post(order, "arrived-pickup", rider.user)

    assert response.status_code == 409
    assert error(response)["code"] == "outside_geofence"
    distance = metres_between((DROP["lat"], DROP["lng"]), PICKUP)
    assert f"You are {round(distance)} m from the pickup" in error(response)["message"]


# --- Steps out of order, and who may take them ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "step", "body", "where"),
    [
        (OrderStatus.RIDER_ASSIGNED, "picked-up", {}, PICKUP),
        (OrderStatus.RIDER_ASSIGNED, "arrived-drop", {}, DROP),
        (OrderStatus.RIDER_ASSIGNED, "deliver", {"delivery_code": RIGHT_CODE}, DROP),
        (OrderStatus.AT_PICKUP, "arrived-pickup", {}, PICKUP),
        (OrderStatus.AT_PICKUP, "arrived-drop", {}, DROP),
        (OrderStatus.PICKED_UP, "deliver", {"delivery_code": RIGHT_CODE}, DROP),
        (OrderStatus.AT_DROPOFF, "picked-up", {}, DROP),
        (OrderStatus.DELIVERED, "picked-up", {}, DROP),
        (OrderStatus.DELIVERED, "fail", {"reason": "Too late"}, DROP),
        (OrderStatus.FAILED, "deliver", {"delivery_code": RIGHT_CODE}, DROP),
    ],
)
def test_a_step_out_of_order_is_an_invalid_transition(status, step, body, where):
    # given the rider standing where the step would be checked, so only the order's state is wrong
    order = OrderFactory(status=status)
    rider = put_rider(order.rider, where)

    response = post(order, step, rider.user, body)

    assert response.status_code == 409, response.content
    assert error(response)["code"] == "invalid_transition"
    assert_unchanged(order, status=status)


@EVERY_STEP
def test_another_rider_gets_404_and_nothing_changes(step, body):
    # given an order at the drop and a different rider standing right there
    order = OrderFactory(status=OrderStatus.AT_DROPOFF)
    stranger = put_rider(RiderFactory(status=Rider.Status.ONLINE), DROP)

    response = post(order, step, stranger.user, body)

    assert response.status_code == 404
    assert error(response)["code"] == "not_found"
    assert_unchanged(order, status=OrderStatus.AT_DROPOFF)
    assert reloaded(order).delivery_code_attempts == 0


@EVERY_STEP
def test_a_customer_even_the_orders_own_gets_403_not_a_rider(step, body):
    order = OrderFactory(status=OrderStatus.AT_DROPOFF)

    response = post(order, step, order.customer, body)

    assert response.status_code == 403
    assert error(response)["code"] == "not_a_rider"
    assert_unchanged(order, status=OrderStatus.AT_DROPOFF)


@EVERY_STEP
def test_an_anonymous_caller_gets_401(step, body):
    order = OrderFactory(status=OrderStatus.AT_DROPOFF)

    response = APIClient().post(url(order, step), body, format="json")

    assert response.status_code == 401
    assert error(response)["code"] == "not_authenticated"
    assert_unchanged(order, status=OrderStatus.AT_DROPOFF)


def test_a_step_on_an_order_that_does_not_exist_is_404():
    rider = put_rider(RiderFactory(status=Rider.Status.ONLINE), PICKUP)
    missing = Order(pk="00000000-0000-4000-8000-000000000000")

    response = post(missing, "arrived-pickup", rider.user)

    assert response.status_code == 404
    assert error(response)["code"] == "not_found"


# --- The delivery code ---------------------------------------------------------------------------


def at_drop_order(**fields) -> Order:
    order = OrderFactory(status=OrderStatus.AT_DROPOFF, **fields)
    put_rider(order.rider, DROP)
    return order


def deliver(order, code: str):
    return post(order, "deliver", order.rider.user, {"delivery_code": code})


def test_a_wrong_code_is_refused_with_the_tries_left_and_the_count_is_kept():
    order = at_drop_order()

    response = deliver(order, WRONG_CODE)

    assert response.status_code == 400
    assert error(response)["code"] == "delivery_code_invalid"
    assert error(response)["fields"] == {"delivery_code": ["Wrong code; 4 tries left."]}
    order = reloaded(order)
    assert order.delivery_code_attempts == 1
    assert order.status == OrderStatus.AT_DROPOFF
    assert not Earning.objects.filter(order=order).exists()
    # and the snapshot shows the tries left too
    snapshot = client_of(order.customer).get(url(order)).json()
    assert snapshot["delivery_code_tries_left"] == 4


def test_five_wrong_codes_lock_the_delivery_and_then_even_the_right_code_is_refused(settings):
    assert settings.DELIVERY_CODE_MAX_ATTEMPTS == 5
    order = at_drop_order()

    # when four wrong codes, each counted down
    first_four = [deliver(order, WRONG_CODE) for _ in range(4)]
    assert [r.status_code for r in first_four] == [400] * 4
    assert [error(r)["fields"]["delivery_code"] for r in first_four] == [
        [f"Wrong code; {left} tries left."] for left in (4, 3, 2, 1)
    ]
    # the fifth locks it
    fifth = deliver(order, WRONG_CODE)
    assert fifth.status_code == 409
    assert error(fifth)["code"] == "delivery_code_locked"
    assert reloaded(order).delivery_code_attempts == 5

    # then the right code is refused as locked, and no more tries are counted
    right = deliver(order, RIGHT_CODE)
    assert right.status_code == 409
    assert error(right)["code"] == "delivery_code_locked"
    order = reloaded(order)
    assert (order.status, order.delivery_code_attempts) == (OrderStatus.AT_DROPOFF, 5)
    assert not Earning.objects.filter(order=order).exists()
    assert client_of(order.customer).get(url(order)).json()["delivery_code_tries_left"] == 0


def test_ops_with_the_assign_permission_reset_the_count_and_the_right_code_goes_through():
    # given a locked delivery
    order = at_drop_order()
    for _ in range(5):
        deliver(order, WRONG_CODE)
    assert error(deliver(order, RIGHT_CODE))["code"] == "delivery_code_locked"
    dispatcher = ops_user("dispatcher")
    assert dispatcher.has_perm("orders.assign_rider")

    # when a dispatcher resets it
    delivery_code_attempts_reset(order_id=order.pk, staff=dispatcher)

    # then the count is back to zero and the right code delivers
    assert reloaded(order).delivery_code_attempts == 0
    response = deliver(order, RIGHT_CODE)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "delivered"
    assert Earning.objects.filter(order=order).count() == 1


def test_staff_without_the_assign_permission_cannot_reset_the_count():
    order = at_drop_order()
    for _ in range(5):
        deliver(order, WRONG_CODE)
    support = ops_user("support")
    assert not support.has_perm("orders.assign_rider")

    with pytest.raises(ApiError) as refused:
        delivery_code_attempts_reset(order_id=order.pk, staff=support)

    assert (refused.value.status_code, refused.value.code) == (403, "permission_denied")
    assert reloaded(order).delivery_code_attempts == 5


@pytest.mark.parametrize("code", ["123", "12345", "12a4", "", None], ids=repr)
def test_a_code_that_is_not_four_digits_is_invalid_and_not_counted(code):
    order = at_drop_order()
    body = {} if code is None else {"delivery_code": code}

    response = post(order, "deliver", order.rider.user, body)

    assert response.status_code == 400
    assert error(response)["code"] == "invalid"
    assert "delivery_code" in error(response)["fields"]
    order = reloaded(order)
    assert (order.status, order.delivery_code_attempts) == (OrderStatus.AT_DROPOFF, 0)


# --- Earnings on delivery ------------------------------------------------------------------------


@pytest.mark.checklist("P7.18")
def test_delivering_credits_one_earning_frees_the_rider_and_a_second_deliver_is_refused(settings):
    order = at_drop_order()
    rider = order.rider
    assert Rider.objects.get(pk=rider.pk).status == Rider.Status.ON_DELIVERY

    first = deliver(order, RIGHT_CODE)

    assert first.status_code == 200, first.content
    (earning,) = Earning.objects.filter(order=order)
    assert earning.rider_id == rider.pk
    assert earning.amount_paise == settings.RIDER_FIXED_PAY_PER_ORDER_PAISE == 5000
    assert Rider.objects.get(pk=rider.pk).status == Rider.Status.ONLINE

    # when the app retries the call
    second = deliver(order, RIGHT_CODE)

    # then it is refused and the rider is still paid once
    assert second.status_code == 409
    assert error(second)["code"] == "invalid_transition"
    assert Earning.objects.filter(order=order).count() == 1
    assert Earning.objects.filter(rider=rider).count() == 1
    assert reloaded(order).tracking_seq == 1


def test_a_cash_order_earning_records_the_cash_collected():
    order = at_drop_order(payment_method=PaymentMethod.COD)
    assert order.amount_paise == 8000

    assert deliver(order, RIGHT_CODE).status_code == 200

    earning = Earning.objects.get(order=order)
    assert earning.cash_collected_paise == order.amount_paise == 8000


def test_a_paid_online_order_earning_records_no_cash():
    order = at_drop_order(payment_method=PaymentMethod.RAZORPAY, payment_status=PaymentStatus.PAID)

    assert deliver(order, RIGHT_CODE).status_code == 200

    earning = Earning.objects.get(order=order)
    assert earning.cash_collected_paise == 0
    assert earning.amount_paise == 5000


def test_the_database_refuses_a_second_earning_for_the_same_order():
    order = OrderFactory(status=OrderStatus.DELIVERED)
    Earning.objects.create(rider=order.rider, order=order, amount_paise=5000)

    with pytest.raises(IntegrityError), transaction.atomic():
        Earning.objects.create(rider=order.rider, order=order, amount_paise=5000)

    assert Earning.objects.filter(order=order).count() == 1


def test_the_database_refuses_an_earning_of_zero():
    order = OrderFactory(status=OrderStatus.DELIVERED)

    with pytest.raises(IntegrityError), transaction.atomic():
        Earning.objects.create(rider=order.rider, order=order, amount_paise=0)


def test_an_earning_cannot_be_changed_once_saved():
    order = OrderFactory(status=OrderStatus.DELIVERED)
    earning = Earning.objects.create(rider=order.rider, order=order, amount_paise=5000)

    earning.amount_paise = 999_999
    with pytest.raises(ValueError, match="immutable"):
        earning.save()

    assert Earning.objects.get(pk=earning.pk).amount_paise == 5000


# --- Failing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}], ids=repr)
def test_failing_needs_a_reason(body):
    order = at_drop_order()

    response = post(order, "fail", order.rider.user, body)

    assert response.status_code == 400
    assert error(response)["code"] == "invalid"
    assert "reason" in error(response)["fields"]
    assert_unchanged(order, status=OrderStatus.AT_DROPOFF)
    assert Rider.objects.get(pk=order.rider_id).status == Rider.Status.ON_DELIVERY


@pytest.mark.parametrize(
    "status",
    [
        OrderStatus.RIDER_ASSIGNED,
        OrderStatus.AT_PICKUP,
        OrderStatus.PICKED_UP,
        OrderStatus.AT_DROPOFF,
    ],
)
def test_failing_ends_the_order_with_the_riders_reason_and_frees_the_rider(status):
    order = OrderFactory(status=status)
    rider = order.rider
    assert rider.status == Rider.Status.ON_DELIVERY

    response = post(order, "fail", rider.user, {"reason": "Customer not reachable"})

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "failed"
    assert response.json()["seq"] == 1
    order = reloaded(order)
    assert order.status == OrderStatus.FAILED
    assert order.rider_id == rider.pk
    (event,) = OrderEvent.objects.filter(order=order)
    assert (event.action, event.from_status, event.to_status) == ("fail", status, "failed")
    assert (event.actor_kind, event.actor_id, event.reason) == (
        "rider",
        rider.user_id,
        "Customer not reachable",
    )
    assert Rider.objects.get(pk=rider.pk).status == Rider.Status.ONLINE
    assert not Earning.objects.filter(order=order).exists()


# --- The tracking snapshot -----------------------------------------------------------------------


@pytest.mark.checklist("P9.5")
def test_the_customer_the_orders_rider_and_a_dispatcher_can_read_the_snapshot():
    order = OrderFactory(status=OrderStatus.PICKED_UP)
    dispatcher = UserFactory(is_staff=True, is_customer=False)
    dispatcher.groups.add(Group.objects.get(name="dispatcher"))

    for user in (order.customer, order.rider.user, dispatcher):
        response = client_of(user).get(url(order))
        assert response.status_code == 200, (user, response.content)
        assert response.json()["order_id"] == str(order.pk)
        assert response.json()["status"] == "picked_up"


def test_another_customer_and_another_rider_cannot_read_the_snapshot():
    order = OrderFactory(status=OrderStatus.PICKED_UP)
    other_customer = UserFactory()
    other_rider = RiderFactory(status=Rider.Status.ONLINE)
    staff_without_groups = UserFactory(is_staff=True, is_customer=False)

    for user in (other_customer, other_rider.user, staff_without_groups):
        response = client_of(user).get(url(order))
        assert response.status_code == 404, user
        assert error(response)["code"] == "not_found"
    assert APIClient().get(url(order)).status_code == 401


def test_a_rider_who_released_the_order_no_longer_reads_its_snapshot():
    # given an order its rider gave back: it searches again (only the current rider may watch)
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    former = order.rider
    assert client_of(former.user).get(url(order)).status_code == 200
    order_transition(order_id=order.pk, action=Action.RELEASE, actor=Actor.rider(former.user))

    response = client_of(former.user).get(url(order))

    assert response.status_code == 404
    assert client_of(order.customer).get(url(order)).json()["status"] == "searching_rider"


def test_while_assigned_the_snapshot_has_the_riders_position_and_an_eta_through_the_pickup(
    settings,
):
    # given a rider standing at the pickup of a 5 km trip (the quote's distance)
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    rider = put_rider(order.rider, PICKUP, seconds_ago=30)
    assert order.quote.distance_m == 5000
    assert settings.DELIVERY_ETA_SPEED_KMH == 18  # 5 m/s

    body = client_of(order.customer).get(url(order)).json()

    assert body["rider"]["lat"] == pytest.approx(PICKUP["lat"])
    assert body["rider"]["lng"] == pytest.approx(PICKUP["lng"])
    assert datetime.fromisoformat(body["rider"]["updated_at"]) == rider.last_location_at
    assert body["eta_seconds"] == 1000  # 0 m to the pickup + 5000 m of trip, at 5 m/s
    assert body["seq"] == 0
    assert body["pickup"] == {"lat": PICKUP["lat"], "lng": PICKUP["lng"], "address": "MG Road"}
    assert body["drop"] == {"lat": DROP["lat"], "lng": DROP["lng"], "address": "Koramangala"}


def test_once_picked_up_the_eta_is_straight_to_the_drop():
    # given a rider 1 km north of the drop with the package
    order = OrderFactory(status=OrderStatus.PICKED_UP)
    rider = put_rider(order.rider, DROP, metres=1000)
    distance = metres_between(north_of(DROP, 1000), DROP)

    body = client_of(rider.user).get(url(order)).json()

    assert body["rider"]["lat"] == pytest.approx(north_of(DROP, 1000)[0])
    assert body["eta_seconds"] == round(distance / 5)
    assert 195 <= body["eta_seconds"] <= 200


def test_before_a_rider_is_assigned_the_snapshot_has_no_rider_and_no_eta():
    order = OrderFactory(status=OrderStatus.SEARCHING_RIDER)

    body = client_of(order.customer).get(url(order)).json()

    assert body["status"] == "searching_rider"
    assert body["rider"] is None
    assert body["eta_seconds"] is None


def test_a_carrying_rider_without_any_position_shows_no_rider_and_no_eta():
    order = OrderFactory(status=OrderStatus.AT_PICKUP)

    body = client_of(order.customer).get(url(order)).json()

    assert (body["rider"], body["eta_seconds"]) == (None, None)


def test_once_delivered_the_snapshot_no_longer_shows_where_the_rider_is():
    order = at_drop_order()
    assert client_of(order.customer).get(url(order)).json()["rider"] is not None

    body = deliver(order, RIGHT_CODE).json()

    assert body["status"] == "delivered"
    assert (body["rider"], body["eta_seconds"]) == (None, None)


@pytest.mark.parametrize(
    ("method", "payment_status", "cash"),
    [
        (PaymentMethod.COD, PaymentStatus.NONE, 8000),
        (PaymentMethod.RAZORPAY, PaymentStatus.PAID, 0),
    ],
)
def test_the_snapshot_tells_the_cash_to_collect(method, payment_status, cash):
    order = OrderFactory(
        status=OrderStatus.PICKED_UP, payment_method=method, payment_status=payment_status
    )

    body = client_of(order.rider.user).get(url(order)).json()

    assert body["cash_to_collect_paise"] == cash


def test_the_snapshot_has_exactly_the_documented_fields_and_never_the_delivery_code():
    order = OrderFactory(status=OrderStatus.AT_DROPOFF)
    put_rider(order.rider, DROP)

    for user in (order.customer, order.rider.user):
        body = client_of(user).get(url(order)).json()
        assert set(body) == {
            "order_id",
            "status",
            "seq",
            "rider",
            "eta_seconds",
            "pickup",
            "drop",
            "cash_to_collect_paise",
            "delivery_code_tries_left",
        }
        assert set(body["rider"]) == {"lat", "lng", "updated_at"}


# The state is checked before the geofence: a rider who already picked up and retries
# "arrived at pickup" from down the road is told the step is out of order, not to come closer
# to a pickup they have left.
@pytest.mark.parametrize(
    ("status", "step", "where"),
    [
        (OrderStatus.PICKED_UP, "arrived-pickup", DROP),
        (OrderStatus.RIDER_ASSIGNED, "arrived-drop", PICKUP),
        (OrderStatus.DELIVERED, "arrived-drop", None),
    ],
)
def test_an_arrival_out_of_order_is_an_invalid_transition_wherever_the_rider_is(
    status, step, where
):
    order = OrderFactory(status=status)
    if where is not None:
        put_rider(order.rider, where)

    response = post(order, step, order.rider.user)

    assert response.status_code == 409
    assert error(response)["code"] == "invalid_transition"
    assert_unchanged(order, status=status)
