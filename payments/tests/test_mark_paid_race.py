"""Checkout's verify and Razorpay's webhook report one capture at the same moment: paid once.

Real threads with their own database connections, real commits (transaction=True), the fake
Razorpay on a local port. A pause inside mark_paid, after it has read the payment and before
it writes, makes the two overlap every time instead of by luck.
"""

import threading
import time

import pytest
from django.db import connections
from django.test import Client

from accounts.tests.factories import UserFactory
from orders.models import Order, OrderEvent
from orders.tests.support import book, client_for
from payments.models import Payment, WebhookEvent
from payments.services import checkout
from payments.tests.fake_razorpay import (
    RAZORPAY_ORDER_URL,
    VERIFY_URL,
    checkout_signature,
    post_webhook,
    webhook_body,
)


@pytest.mark.django_db(transaction=True)
def test_verify_and_webhook_racing_pay_the_order_exactly_once(
    service_area, razorpay, dispatched, monkeypatch
):
    # given an order waiting for a capture Razorpay has made
    customer = UserFactory()
    client = client_for(customer)
    order = book(client, payment_method="razorpay")
    rzp_order_id = client.post(RAZORPAY_ORDER_URL, {"order_id": order["id"]}, format="json").json()[
        "razorpay_order_id"
    ]
    payment = razorpay.capture(rzp_order_id)
    body = webhook_body("payment.captured", payment=payment)

    inside = []
    original_checks = checkout._checks_against_order

    def slow_checks(**kwargs):
        inside.append(threading.current_thread().name)
        time.sleep(0.4)  # the other report arrives while this one is half-way
        return original_checks(**kwargs)

    monkeypatch.setattr(checkout, "_checks_against_order", slow_checks)
    start = threading.Barrier(2)
    answers = {}

    def run(name, request):
        try:
            start.wait()
            answers[name] = request()
        finally:
            connections.close_all()

    def verify():
        return client.post(
            VERIFY_URL,
            {
                "razorpay_order_id": rzp_order_id,
                "razorpay_payment_id": payment["id"],
                "razorpay_signature": checkout_signature(rzp_order_id, payment["id"]),
            },
            format="json",
        )

    threads = [
        threading.Thread(target=run, args=("verify", verify), name="verify"),
        threading.Thread(
            target=run,
            args=("webhook", lambda: post_webhook(Client(), body, "evt_race")),
            name="webhook",
        ),
    ]

    # when both report the capture at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then both are answered as success, and the order was paid exactly once
    assert answers["verify"].status_code == 200, answers["verify"].content
    assert answers["verify"].json()["payment_status"] == "paid"
    assert answers["webhook"].status_code == 200
    assert WebhookEvent.objects.get(event_id="evt_race").outcome == "captured"
    # only the first reached the checks; the second waited on the lock, then found it done
    assert len(inside) == 1
    stored = Order.objects.get(pk=order["id"])
    assert (stored.status, stored.payment_status) == ("searching_rider", "paid")
    assert OrderEvent.objects.filter(order=stored, action="mark_paid").count() == 1
    assert Payment.objects.get().razorpay_payment_id == payment["id"]
    assert dispatched == [order["id"]]
    assert razorpay.refund_requests == []
