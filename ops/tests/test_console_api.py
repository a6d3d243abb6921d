"""The console's JSON: the snapshot, the order panel, and assigning from it.

Real requests with Django's client, signed in with the session as the console page is (through
the admin's sign-in); CSRF is enforced where the page's POSTs need it.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from delivery.models import Offer
from delivery.tests.support import north_of_pickup, rider_near_pickup, searching_order
from ops.tests.support import (
    SNAPSHOT_URL,
    browser,
    csrf_token,
    customer,
    dispatcher,
    finance,
    order_url,
    staff_without_group,
    support,
)
from orders.models import Order, OrderEvent, OrderStatus, PaymentMethod, PaymentStatus
from orders.tests.factories import AREA, PICKUP, OrderFactory, ServiceAreaFactory
from payments.models import Payment, Refund
from riders.models import Rider, RiderLocation
from riders.tests.factories import RiderFactory, access_token, located

pytestmark = pytest.mark.django_db


# --- Who may read ------------------------------------------------------------------------------


def test_anonymous_callers_get_401_in_the_error_shape():
    response = browser().get(SNAPSHOT_URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == 'Session realm="ops"'


def test_a_bearer_token_is_no_key_to_the_console():
    """Only the browser session counts: these endpoints are not part of the apps' API."""
    user = dispatcher()
    response = browser().get(SNAPSHOT_URL, HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")

    assert response.status_code == 401


@pytest.mark.parametrize("who", [customer, staff_without_group, finance])
def test_people_without_the_consoles_permissions_get_403(who):
    order = searching_order()
    client = browser(who())

    for url in (SNAPSHOT_URL, order_url(order)):
        response = client.get(url)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "permission_denied"


def test_the_console_endpoints_are_not_in_the_api_schema(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    assert not [path for path in schema["paths"] if path.startswith("/ops/")]


# --- The snapshot ------------------------------------------------------------------------------


def test_the_snapshot_has_riders_at_work_active_orders_the_queue_and_the_areas(settings):
    # given riders in every state, and orders searching, carried and finished
    settings.RIDER_LOCATION_MAX_AGE_SECONDS = 120
    ServiceAreaFactory(area=AREA)
    idle = rider_near_pickup(500, seconds_ago=10)
    stale = rider_near_pickup(800, seconds_ago=600)
    rider_near_pickup(300, status=Rider.Status.OFFLINE)
    rider_near_pickup(400, status=Rider.Status.SUSPENDED)
    older = searching_order()
    newer = searching_order()
    Order.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(minutes=7))
    OrderEvent.objects.create(
        order=older, action="confirm_cash", to_status="searching_rider", actor_kind="system"
    )
    OrderEvent.objects.filter(order=older).update(created_at=timezone.now() - timedelta(minutes=6))
    carried = OrderFactory(status=OrderStatus.PICKED_UP)
    courier = carried.rider
    Rider.objects.filter(pk=courier.pk).update(
        status_changed_at=timezone.now() - timedelta(minutes=5)
    )
    located(courier, lat=PICKUP["lat"], lng=PICKUP["lng"], seconds_ago=5)
    for seconds_ago, metres in ((240, 0), (120, 300), (60, 600), (400, 999)):
        lat, lng = north_of_pickup(metres)
        RiderLocation.objects.create(
            rider=courier,
            point=f"POINT({lng} {lat})",
            recorded_at=timezone.now() - timedelta(seconds=seconds_ago),
        )
    finished = OrderFactory(status=OrderStatus.DELIVERED)  # its rider is online again, unlocated

    # when a dispatcher's console loads its snapshot
    response = browser(dispatcher()).get(SNAPSHOT_URL)

    # then
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    riders = {rider["id"]: rider for rider in body["riders"]}
    assert set(riders) == {str(pk) for pk in (idle.pk, stale.pk, courier.pk, finished.rider_id)}
    assert riders[str(finished.rider_id)]["lat"] is None
    assert riders[str(finished.rider_id)]["stale"] is True
    assert riders[str(idle.pk)]["stale"] is False
    assert riders[str(idle.pk)]["status"] == "online"
    assert riders[str(stale.pk)]["stale"] is True
    assert riders[str(courier.pk)]["status"] == "on_delivery"
    assert round(riders[str(idle.pk)]["lat"], 4) == round(north_of_pickup(500)[0], 4)

    orders = {order["id"]: order for order in body["orders"]}
    assert set(orders) == {str(older.pk), str(newer.pk), str(carried.pk)}
    assert orders[str(carried.pk)]["rider_id"] == str(courier.pk)
    assert orders[str(carried.pk)]["pickup"] == PICKUP
    # the courier's path: fixes since the delivery began (5 min ago), oldest first
    path = orders[str(carried.pk)]["path"]
    assert [round(lat, 4) for lat, _ in path] == [
        round(north_of_pickup(metres)[0], 4) for metres in (0, 300, 600)
    ]
    assert orders[str(older.pk)]["path"] == []

    queue = body["queue"]
    assert [entry["order_id"] for entry in queue] == [str(older.pk), str(newer.pk)]
    assert 355 <= queue[0]["waiting_seconds"] <= 365  # from the searching event, not creation
    assert body["settings"]["stale_after_seconds"] == 120
    assert body["permissions"] == {"assign": True}
    assert [area["name"] for area in body["areas"]] == ["Central Bengaluru"]
    assert body["areas"][0]["geometry"]["type"] == "MultiPolygon"
    assert [alert["kind"] for alert in body["alerts"]] == ["no_rider"]


def test_the_snapshot_tells_support_it_cannot_assign():
    assert browser(support()).get(SNAPSHOT_URL).json()["permissions"] == {"assign": False}


def test_the_snapshot_shows_no_customer_phone_or_delivery_code():
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED, delivery_code="9876")
    text = browser(dispatcher()).get(SNAPSHOT_URL).content.decode()

    assert order.customer.phone not in text and order.customer.phone[-10:] not in text
    assert order.rider.user.phone[-10:] not in text
    assert "9876" not in text


# --- The order panel ---------------------------------------------------------------------------


def paid_order_with_a_failed_refund() -> Order:
    order = OrderFactory(
        status=OrderStatus.CANCELLED,
        payment_method=PaymentMethod.RAZORPAY,
        payment_status=PaymentStatus.REFUND_PENDING,
    )
    payment = Payment.objects.create(
        order=order,
        razorpay_order_id="order_panel1",
        razorpay_payment_id="pay_panel1",
        amount_paise=order.amount_paise,
        currency="INR",
        status=Payment.Status.CAPTURED,
        captured_at=timezone.now(),
        captured_by="verify",
    )
    Refund.objects.create(
        payment=payment,
        razorpay_payment_id="pay_panel1",
        idempotency_key="panel-1",
        amount_paise=order.amount_paise,
        status=Refund.Status.FAILED,
        last_error="The refund amount is invalid",
    )
    return order


def test_the_panel_shows_events_offers_and_payments_as_far_as_the_group_allows():
    order = paid_order_with_a_failed_refund()
    OrderEvent.objects.create(
        order=order,
        action="cancel",
        from_status="searching_rider",
        to_status="cancelled",
        actor_kind="system",
        reason="no_rider",
    )

    as_support = browser(support()).get(order_url(order)).json()
    as_dispatcher = browser(dispatcher()).get(order_url(order)).json()

    assert as_support["order"]["id"] == str(order.pk)
    assert [event["reason"] for event in as_support["events"]] == ["no_rider"]
    assert as_support["offers"] == []
    [payment] = as_support["payments"]
    assert payment["razorpay_order_id"] == "order_panel1"
    assert payment["refunds"][0]["last_error"] == "The refund amount is invalid"
    # dispatchers have no payments.view_payment
    assert as_dispatcher["payments"] is None
    assert as_dispatcher["events"][0]["actor_name"] == "system"


def test_the_panel_offers_the_same_riders_as_the_admin_nearest_first(settings):
    settings.DISPATCH_MAX_RADIUS_M = 12000
    order = searching_order()
    far = rider_near_pickup(1500)
    near = rider_near_pickup(300)
    rider_near_pickup(13000)  # beyond DISPATCH_MAX_RADIUS_M
    rider_near_pickup(100, status=Rider.Status.OFFLINE)
    rider_near_pickup(150, status=Rider.Status.ON_DELIVERY)
    rider_near_pickup(250, approved=False)

    detail = browser(dispatcher()).get(order_url(order)).json()

    assert detail["can_assign"] is True and detail["can_unassign"] is False
    assert [rider["id"] for rider in detail["candidates"]] == [str(near.pk), str(far.pk)]
    assert 290 <= detail["candidates"][0]["distance_m"] <= 310


def test_support_sees_the_panel_without_candidates_or_buttons():
    order = searching_order()
    rider_near_pickup(300)

    detail = browser(support()).get(order_url(order)).json()

    assert (detail["can_assign"], detail["can_unassign"], detail["candidates"]) == (
        False,
        False,
        [],
    )


def test_an_unknown_order_is_404():
    order = searching_order()
    missing = order_url(order).replace(str(order.pk), "00000000-0000-0000-0000-000000000001")

    response = browser(dispatcher()).get(missing)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- Assigning from the panel ------------------------------------------------------------------


def post_json(client, url, body, token):
    return client.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)


def test_a_dispatcher_assigns_through_the_same_service_as_the_admin():
    # given a searching order, a free rider nearby, and a dispatcher's console
    order = searching_order()
    rider = rider_near_pickup(300)
    staff = dispatcher()
    client = browser(staff, csrf=True)
    token = csrf_token(client)

    # when they assign the rider from the panel
    response = post_json(client, order_url(order, "assign"), {"rider_id": str(rider.pk)}, token)

    # then the order is the rider's, logged like an admin assignment, and the panel is fresh
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["order"]["status"] == "rider_assigned"
    assert body["order"]["rider_id"] == str(rider.pk)
    assert body["can_unassign"] is True
    order.refresh_from_db()
    assert (order.status, order.rider_id) == (OrderStatus.RIDER_ASSIGNED, rider.pk)
    event = OrderEvent.objects.filter(order=order).latest("created_at")
    assert (event.actor_id, event.actor_kind) == (staff.pk, "staff")
    assert "ops console" in event.reason
    assert Offer.objects.get(order=order).round_number == 0

    # and unassigning gives it back to dispatch
    response = post_json(client, order_url(order, "unassign"), {}, token)
    assert response.status_code == 200, response.content
    order.refresh_from_db()
    assert (order.status, order.rider_id) == (OrderStatus.SEARCHING_RIDER, None)


def test_the_services_refusal_reaches_the_panel_in_its_words():
    order = searching_order()
    offline = rider_near_pickup(300, status=Rider.Status.OFFLINE)
    client = browser(dispatcher(), csrf=True)
    token = csrf_token(client)

    response = post_json(client, order_url(order, "assign"), {"rider_id": str(offline.pk)}, token)

    assert response.status_code == 409
    assert response.json()["error"]["message"]
    order.refresh_from_db()
    assert order.status == OrderStatus.SEARCHING_RIDER


def test_an_invalid_rider_id_is_a_field_error():
    order = searching_order()
    client = browser(dispatcher(), csrf=True)
    token = csrf_token(client)

    response = post_json(client, order_url(order, "assign"), {"rider_id": "nope"}, token)

    assert response.status_code == 400
    assert "rider_id" in response.json()["error"]["fields"]


def test_assigning_needs_the_assign_permission():
    order = searching_order()
    rider = rider_near_pickup(300)
    client = browser(support(), csrf=True)
    token = csrf_token(client)

    response = post_json(client, order_url(order, "assign"), {"rider_id": str(rider.pk)}, token)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Order.objects.get(pk=order.pk).status == OrderStatus.SEARCHING_RIDER


def test_assigning_without_the_csrf_token_is_refused():
    order = searching_order()
    rider = rider_near_pickup(300)
    client = browser(dispatcher(), csrf=True)

    response = client.post(
        order_url(order, "assign"), {"rider_id": str(rider.pk)}, content_type="application/json"
    )

    assert response.status_code == 403
    assert Order.objects.get(pk=order.pk).status == OrderStatus.SEARCHING_RIDER


def test_assigning_an_unknown_order_is_404():
    rider = RiderFactory(status=Rider.Status.ONLINE)
    order = searching_order()
    missing = order_url(order, "assign").replace(
        str(order.pk), "00000000-0000-0000-0000-0000000000aa"
    )
    client = browser(dispatcher(), csrf=True)
    token = csrf_token(client)

    response = post_json(client, missing, {"rider_id": str(rider.pk)}, token)

    assert response.status_code == 404
