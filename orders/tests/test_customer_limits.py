"""One customer account cannot tie up the city: live orders, quotes and bookings are limited.

Through the HTTP API: a fourth unfinished order is refused with 429 too_many_live_orders and a
Retry-After (the replay of an order already booked is not); quotes and bookings per minute
are limited per account; a customer who cancels once the rider is at the pickup is recorded
as doing so.
"""

import pytest

from accounts.tests.factories import UserFactory
from orders.models import Order, OrderEvent, OrderStatus
from orders.tests.support import ORDERS_URL, QUOTE_URL, book, client_for, order_url, quote_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_area")]


def test_a_fourth_live_order_is_refused_until_one_of_the_three_ends(settings):
    settings.ORDER_MAX_LIVE_PER_CUSTOMER = 3
    customer = UserFactory()
    client = client_for(customer)
    booked = [book(client, key=f"live-{index}") for index in range(3)]

    # when the customer books a fourth while three are under way
    quote = client.post(QUOTE_URL, quote_body(), format="json").json()
    refused = client.post(
        ORDERS_URL, {"quote_id": quote["id"], "payment_method": "cod"}, format="json"
    )

    # then it is refused in the error shape, with a time to try again, and nothing is booked
    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["code"] == "too_many_live_orders"
    assert refused["Retry-After"] == "60"
    assert Order.objects.filter(customer=customer).count() == 3
    # a retry of a booking already made still answers with its order
    replay = client.post(
        ORDERS_URL,
        {"quote_id": str(Order.objects.get(pk=booked[0]["id"]).quote_id), "payment_method": "cod"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="live-0",
    )
    assert replay.status_code == 200 and replay.json()["id"] == booked[0]["id"], replay.content

    # when one of the three ends, there is room again
    cancelled = client.post(order_url(booked[0]["id"], "cancel"), {}, format="json")
    assert cancelled.status_code == 200, cancelled.content
    again = client.post(
        ORDERS_URL, {"quote_id": quote["id"], "payment_method": "cod"}, format="json"
    )
    assert again.status_code == 201, again.content


def test_another_customers_orders_do_not_count(settings):
    settings.ORDER_MAX_LIVE_PER_CUSTOMER = 1
    book(client_for(UserFactory()))
    assert book(client_for(UserFactory()))["status"] == OrderStatus.SEARCHING_RIDER


def test_quotes_and_bookings_per_minute_are_limited_per_account(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "quote_customer": "3/min",
            "order_customer": "2/min",
        },
    }
    settings.ORDER_MAX_LIVE_PER_CUSTOMER = 10
    customer = UserFactory()
    client = client_for(customer)

    quotes = [client.post(QUOTE_URL, quote_body(), format="json") for _ in range(4)]
    assert [q.status_code for q in quotes] == [201, 201, 201, 429]
    assert quotes[-1].json()["error"]["code"] == "throttled"
    assert int(quotes[-1]["Retry-After"]) > 0

    bookings = [
        client.post(
            ORDERS_URL, {"quote_id": q.json()["id"], "payment_method": "cod"}, format="json"
        )
        for q in quotes[:3]
    ]
    assert [b.status_code for b in bookings] == [201, 201, 429]
    assert Order.objects.filter(customer=customer).count() == 2
    # reading the list is not booking
    assert client.get(ORDERS_URL).status_code == 200
    # and another account has its own allowance
    assert client_for(UserFactory()).post(QUOTE_URL, quote_body(), format="json").status_code == 201


def test_a_cancellation_once_the_rider_is_at_the_pickup_is_recorded_as_such():
    from orders.tests.factories import OrderFactory

    order = OrderFactory(status=OrderStatus.AT_PICKUP)
    client = client_for(order.customer)

    cancelled = client.post(
        order_url(order.pk, "cancel"), {"reason": "changed my mind"}, format="json"
    )

    assert cancelled.status_code == 200, cancelled.content
    event = OrderEvent.objects.filter(order=order, action="cancel").get()
    assert (event.from_status, event.actor_kind, event.reason) == (
        OrderStatus.AT_PICKUP,
        "customer",
        "changed my mind",
    )
