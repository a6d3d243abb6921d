"""Booking, listing, cancelling and rating orders through the API."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import UserFactory
from orders.models import Order, OrderEvent, OrderStatus, PaymentStatus, Quote, Rating
from orders.services import delivery_code_hmac
from orders.tests.factories import OrderFactory, QuoteFactory
from orders.tests.support import (
    ORDERS_URL,
    QUOTE_URL,
    book,
    client_for,
    ops_user,
    order_url,
    quote_body,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return UserFactory()


def _quote_id(client) -> str:
    return client.post(QUOTE_URL, quote_body(), format="json").json()["id"]


def _events(order_id) -> list[tuple]:
    return list(
        OrderEvent.objects.filter(order_id=order_id).values_list(
            "action", "from_status", "to_status", "actor_kind"
        )
    )


# --- Booking ---------------------------------------------------------------------------------


@pytest.mark.checklist("P9.4")
def test_cash_on_delivery_books_at_the_quoted_amount_and_goes_to_dispatch(
    customer, service_area, dispatched, django_capture_on_commit_callbacks
):
    # given
    client = client_for(customer)
    quote = client.post(QUOTE_URL, quote_body(), format="json").json()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            ORDERS_URL,
            {"quote_id": quote["id"], "payment_method": "cod", "notes": "Ring twice"},
            format="json",
        )

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "searching_rider"
    assert body["payment_status"] == "none"
    assert body["amount_paise"] == quote["total_paise"]
    assert body["breakdown"] == quote["breakdown"]
    assert body["notes"] == "Ring twice"
    assert body["rider"] is None
    assert len(body["delivery_code"]) == 4 and body["delivery_code"].isdigit()
    order = Order.objects.get(pk=body["id"])
    assert order.delivery_code_hmac == delivery_code_hmac(
        order_id=order.pk, code=body["delivery_code"]
    )
    assert _events(order.pk) == [
        ("create", "", "created", "customer"),
        ("confirm_cash", "created", "searching_rider", "system"),
    ]
    assert dispatched == [str(order.pk)]


def test_a_booking_answers_what_a_read_of_the_order_shows_in_nineteen_statements(
    customer, service_area
):
    # given a customer's client
    client = client_for(customer)

    # when they quote and book, counting the statements each request sends
    # (read before the next request: Django empties the connection's log when one starts)
    with CaptureQueriesContext(connection) as quoting:
        quote = client.post(QUOTE_URL, quote_body(), format="json").json()
    quoting = [query["sql"] for query in quoting.captured_queries]
    with CaptureQueriesContext(connection) as booking:
        response = client.post(
            ORDERS_URL,
            {"quote_id": quote["id"], "payment_method": "cod"},
            format="json",
            headers={"Idempotency-Key": "k-17"},
        )
    booking = [query["sql"] for query in booking.captured_queries]

    # then the booking's answer is the order as a read of it shows it
    assert response.status_code == 201, response.content
    assert response.json() == client.get(order_url(response.json()["id"])).json()
    # and the quote took 4 statements (the user, the areas with their tariffs, the distance,
    # the insert) and the booking 15 (the user; BEGIN, the locked quote, the key's replay
    # check, the locked customer and their live orders' count, the quote's order check, the
    # order and its event; the state machine's savepoint, lock, update, event and release;
    # COMMIT), with no read-back of the order
    assert (len(quoting), len(booking)) == (4, 15), [sql[:60] for sql in quoting + booking]


def test_the_amount_comes_from_the_quote_never_from_the_client(customer, service_area):
    client = client_for(customer)
    quote_id = _quote_id(client)

    response = client.post(
        ORDERS_URL,
        {"quote_id": quote_id, "payment_method": "cod", "amount_paise": 1, "total_paise": 1},
        format="json",
    )

    assert response.json()["amount_paise"] == Quote.objects.get(pk=quote_id).total_paise > 1


def test_razorpay_orders_wait_for_payment_and_are_not_dispatched(
    customer, service_area, dispatched, settings, django_capture_on_commit_callbacks
):
    settings.PAYMENTS_ENABLED = True
    with django_capture_on_commit_callbacks(execute=True):
        body = book(client_for(customer), payment_method="razorpay")

    assert (body["status"], body["payment_status"]) == ("payment_pending", "pending")
    assert dispatched == []


@pytest.mark.checklist("P7.15")
def test_without_razorpay_keys_online_payment_is_refused_and_cash_still_works(
    customer, service_area, settings, api_client
):
    # given no keys
    settings.RAZORPAY_KEY_ID = settings.RAZORPAY_KEY_SECRET = ""
    settings.PAYMENTS_ENABLED = False
    client = client_for(customer)
    quote_id = _quote_id(client)

    # when / then
    refused = client.post(
        ORDERS_URL, {"quote_id": quote_id, "payment_method": "razorpay"}, format="json"
    )
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "payments_unavailable"
    assert not Order.objects.exists()
    cash = client.post(ORDERS_URL, {"quote_id": quote_id, "payment_method": "cod"}, format="json")
    assert cash.status_code == 201
    config = api_client.get("/api/config/").json()
    assert config["payments_enabled"] is False and config["razorpay_key_id"] is None


def test_a_retry_with_the_same_idempotency_key_returns_the_same_order(customer, service_area):
    client = client_for(customer)
    quote_id = _quote_id(client)
    request = {"quote_id": quote_id, "payment_method": "cod"}

    first = client.post(ORDERS_URL, request, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    retry = client.post(ORDERS_URL, request, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert Order.objects.count() == 1
    assert OrderEvent.objects.count() == 2


def test_the_same_key_with_a_different_request_is_refused(customer, service_area):
    client = client_for(customer)
    quote_id = _quote_id(client)
    other_quote_id = _quote_id(client)
    client.post(
        ORDERS_URL,
        {"quote_id": quote_id, "payment_method": "cod"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
    )

    changed_notes = client.post(
        ORDERS_URL,
        {"quote_id": quote_id, "payment_method": "cod", "notes": "different"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
    )
    other_quote = client.post(
        ORDERS_URL,
        {"quote_id": other_quote_id, "payment_method": "cod"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
    )

    for response in (changed_notes, other_quote):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1
    assert not Order.objects.filter(quote_id=other_quote_id).exists()


def test_keys_are_per_customer(service_area):
    first, second = UserFactory(), UserFactory()
    for user in (first, second):
        client = client_for(user)
        response = client.post(
            ORDERS_URL,
            {"quote_id": _quote_id(client), "payment_method": "cod"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="same",
        )
        assert response.status_code == 201
    assert Order.objects.count() == 2


def test_a_quote_books_one_order_only(customer, service_area):
    client = client_for(customer)
    quote_id = _quote_id(client)
    client.post(ORDERS_URL, {"quote_id": quote_id, "payment_method": "cod"}, format="json")

    again = client.post(ORDERS_URL, {"quote_id": quote_id, "payment_method": "cod"}, format="json")

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "quote_already_used"
    assert Order.objects.count() == 1


def test_an_expired_quote_cannot_be_booked(customer, service_area, settings):
    client = client_for(customer)
    quote_id = _quote_id(client)

    with time_machine.travel(timezone.now() + timedelta(seconds=settings.QUOTE_TTL_SECONDS + 1)):
        response = client.post(
            ORDERS_URL, {"quote_id": quote_id, "payment_method": "cod"}, format="json"
        )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "quote_expired"
    assert "quote_id" in response.json()["error"]["fields"]
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quote_id": "00000000-0000-0000-0000-000000000001", "payment_method": "cod"}, "quote_id"),
        ({"quote_id": "not-a-uuid", "payment_method": "cod"}, "quote_id"),
        ({"payment_method": "cod"}, "quote_id"),
        ({"quote_id": "00000000-0000-0000-0000-000000000001"}, "payment_method"),
        (
            {"quote_id": "00000000-0000-0000-0000-000000000001", "payment_method": "upi"},
            "payment_method",
        ),
    ],
)
def test_unknown_or_missing_fields_are_answered_400(customer, service_area, body, field):
    response = client_for(customer).post(ORDERS_URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Order.objects.exists()


def test_another_customers_quote_is_unknown(customer, service_area):
    stranger_quote = QuoteFactory()

    response = client_for(customer).post(
        ORDERS_URL, {"quote_id": str(stranger_quote.pk), "payment_method": "cod"}, format="json"
    )

    assert response.status_code == 400
    assert "quote_id" in response.json()["error"]["fields"]
    assert not Order.objects.exists()


# --- Reading ---------------------------------------------------------------------------------


def test_customers_see_only_their_own_orders_and_others_are_404(customer, service_area):
    mine = book(client_for(customer))
    theirs = OrderFactory()
    client = client_for(customer)

    listing = client.get(ORDERS_URL).json()

    assert listing["count"] == 1
    assert [o["id"] for o in listing["results"]] == [mine["id"]]
    assert client.get(order_url(mine["id"])).status_code == 200
    for url in (
        order_url(theirs.pk),
        order_url(theirs.pk, "cancel"),
        order_url(theirs.pk, "rating"),
    ):
        method = client.get if url == order_url(theirs.pk) else client.post
        response = method(url, {"reason": "x", "stars": 5}, format="json")
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.status == OrderStatus.SEARCHING_RIDER and not Rating.objects.exists()


def test_ops_with_the_view_permission_see_all_orders_without_delivery_codes(customer, service_area):
    book(client_for(customer))
    OrderFactory()
    support = ops_user("support")
    plain_staff = UserFactory(is_staff=True)

    listing = client_for(support).get(ORDERS_URL).json()

    assert listing["count"] == 2
    assert all(order["delivery_code"] is None for order in listing["results"])
    # is_staff alone grants nothing: that user sees only their own (none).
    assert client_for(plain_staff).get(ORDERS_URL).json()["count"] == 0


def test_the_assigned_rider_is_shown_with_a_masked_phone(customer):
    order = OrderFactory(quote__customer=customer, status=OrderStatus.RIDER_ASSIGNED)

    rider = client_for(customer).get(order_url(order.pk)).json()["rider"]

    assert rider["name"] == order.rider.user.name
    assert rider["phone"] == order.rider.user.phone[:3] + "******" + order.rider.user.phone[-4:]
    assert rider["vehicle_number"] == order.rider.vehicle_number


# --- Cancelling ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        OrderStatus.CREATED,
        OrderStatus.PAYMENT_PENDING,
        OrderStatus.SEARCHING_RIDER,
        OrderStatus.RIDER_ASSIGNED,
        OrderStatus.AT_PICKUP,
    ],
)
def test_customers_cancel_until_pickup_and_late_once_the_rider_is_there(customer, status):
    order = OrderFactory(quote__customer=customer, status=status)

    response = client_for(customer).post(
        order_url(order.pk, "cancel"), {"reason": "Changed my mind"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    # the rider came for nothing: recorded for a fee (none is charged yet)
    assert response.json()["cancelled_late"] is (status == OrderStatus.AT_PICKUP)
    order.refresh_from_db()
    assert order.cancelled_late is (status == OrderStatus.AT_PICKUP)
    assert response.json()["delivery_code"] is None  # blanked: it has no use any more
    event = OrderEvent.objects.get(order=order)
    assert (event.from_status, event.to_status, event.actor, event.reason) == (
        status,
        "cancelled",
        customer,
        "Changed my mind",
    )


@pytest.mark.parametrize(
    "status",
    [
        OrderStatus.PICKED_UP,
        OrderStatus.AT_DROPOFF,
        OrderStatus.DELIVERED,
        OrderStatus.CANCELLED,
        OrderStatus.FAILED,
    ],
)
def test_customers_cannot_cancel_after_pickup_and_nothing_changes(customer, status):
    order = OrderFactory(quote__customer=customer, status=status)

    response = client_for(customer).post(
        order_url(order.pk, "cancel"), {"reason": "late"}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    order.refresh_from_db()
    assert order.status == status
    assert not OrderEvent.objects.filter(order=order).exists()


def test_an_ops_cancellation_at_the_pickup_is_not_the_customers_late_one():
    order = OrderFactory(status=OrderStatus.AT_PICKUP)

    response = client_for(ops_user("dispatcher")).post(
        order_url(order.pk, "cancel"), {"reason": "Shop closed"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["cancelled_late"] is False


def test_ops_cancel_any_live_order_through_their_group_permission():
    order = OrderFactory(status=OrderStatus.PICKED_UP)
    dispatcher = ops_user("dispatcher")

    response = client_for(dispatcher).post(
        order_url(order.pk, "cancel"), {"reason": "Rider crashed"}, format="json"
    )

    assert response.status_code == 200
    event = OrderEvent.objects.get(order=order)
    assert (event.actor_kind, event.actor, event.to_status) == ("staff", dispatcher, "cancelled")


@pytest.mark.checklist("P10.11")
def test_ops_without_the_cancel_permission_are_refused():
    order = OrderFactory(status=OrderStatus.SEARCHING_RIDER)
    finance = ops_user("finance")  # sees orders, cannot cancel them

    response = client_for(finance).post(order_url(order.pk, "cancel"), {}, format="json")

    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == OrderStatus.SEARCHING_RIDER


# --- Rating ----------------------------------------------------------------------------------


def test_a_delivered_order_is_rated_once(customer):
    order = OrderFactory(quote__customer=customer, status=OrderStatus.DELIVERED)
    client = client_for(customer)

    first = client.post(
        order_url(order.pk, "rating"), {"stars": 5, "comment": "Quick"}, format="json"
    )
    second = client.post(order_url(order.pk, "rating"), {"stars": 1}, format="json")

    assert first.status_code == 201
    assert first.json()["stars"] == 5
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "already_rated"
    assert Rating.objects.get(order=order).stars == 5


@pytest.mark.parametrize("stars", [0, 6, -1, "five", None])
def test_stars_must_be_one_to_five(customer, stars):
    order = OrderFactory(quote__customer=customer, status=OrderStatus.DELIVERED)

    response = client_for(customer).post(
        order_url(order.pk, "rating"), {"stars": stars}, format="json"
    )

    assert response.status_code == 400
    assert "stars" in response.json()["error"]["fields"]
    assert not Rating.objects.exists()


def test_an_undelivered_order_cannot_be_rated(customer):
    order = OrderFactory(quote__customer=customer, status=OrderStatus.PICKED_UP)

    response = client_for(customer).post(order_url(order.pk, "rating"), {"stars": 4}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "order_not_delivered"


def test_the_database_refuses_bad_stars_and_a_second_rating():
    from django.db import IntegrityError, transaction

    order = OrderFactory(status=OrderStatus.DELIVERED)
    with pytest.raises(IntegrityError), transaction.atomic():
        Rating.objects.create(order=order, stars=6)
    Rating.objects.create(order=order, stars=3)
    with pytest.raises(IntegrityError), transaction.atomic():
        Rating.objects.create(order=order, stars=4)


def test_the_database_refuses_cash_orders_with_a_payment_status():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(payment_method="cod", payment_status=PaymentStatus.PAID)
