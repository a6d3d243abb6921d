"""Simultaneous retries of one order create with one Idempotency-Key make exactly one order."""

import threading

import pytest
from django.db import connections

from accounts.tests.factories import UserFactory
from orders.models import Order, OrderEvent
from orders.tests.support import ORDERS_URL, QUOTE_URL, client_for, quote_body

RETRIES = 4


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_create_one_order(service_area, dispatched):
    # given a quote, and an app that fires the same create several times at once
    customer = UserFactory()
    quote_id = client_for(customer).post(QUOTE_URL, quote_body(), format="json").json()["id"]
    request = {"quote_id": quote_id, "payment_method": "cod"}
    start = threading.Barrier(RETRIES)
    answers: list = []

    def create():
        try:
            start.wait()
            answers.append(
                client_for(customer).post(
                    ORDERS_URL, request, format="json", HTTP_IDEMPOTENCY_KEY="same-key"
                )
            )
        finally:
            connections.close_all()

    # when
    threads = [threading.Thread(target=create) for _ in range(RETRIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then one made the order, the rest replayed it, and only one order exists
    assert sorted(answer.status_code for answer in answers) == [200] * (RETRIES - 1) + [201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert Order.objects.count() == 1
    assert OrderEvent.objects.filter(action="create").count() == 1
    assert len(dispatched) == 1
