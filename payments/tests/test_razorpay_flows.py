"""Razorpay checkout, webhooks, refunds and reconciliation over HTTP, Razorpay faked locally."""

import asyncio
from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from accounts.tests.factories import UserFactory
from core.realtime import OPS_GROUP
from ops.selectors import console_alerts
from orders.models import Order, OrderEvent, OrderStatus, PaymentStatus
from orders.tests.support import book, client_for, ops_user, order_url
from payments.models import Payment, Refund, WebhookEvent
from payments.tasks import reconcile_pending_payments, send_refund
from payments.tests.fake_razorpay import (
    KEY_ID,
    RAZORPAY_ORDER_URL,
    VERIFY_URL,
    checkout_signature,
    post_webhook,
    webhook_body,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return UserFactory()


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Runs on-commit work (tasks) as a real commit would, including work queued by it."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def checkout(customer, service_area, razorpay, on_commit):
    """A razorpay order booked and its Razorpay order made: (client, order body, rzp order id)."""
    client = client_for(customer)
    with on_commit():
        order = book(client, payment_method="razorpay")
    response = client.post(RAZORPAY_ORDER_URL, {"order_id": order["id"]}, format="json")
    assert response.status_code == 200, response.content
    return client, order, response.json()["razorpay_order_id"]


def _mark_paid_events(order_id) -> int:
    return OrderEvent.objects.filter(order_id=order_id, action="mark_paid").count()


def _verify(client, rzp_order_id, payment_id, signature=None):
    return client.post(
        VERIFY_URL,
        {
            "razorpay_order_id": rzp_order_id,
            "razorpay_payment_id": payment_id,
            "razorpay_signature": signature or checkout_signature(rzp_order_id, payment_id),
        },
        format="json",
    )


def _captured_webhook(payment: dict, event: str = "payment.captured") -> bytes:
    return webhook_body(event, payment=payment)


# --- Razorpay order --------------------------------------------------------------------------


def test_a_razorpay_order_is_made_for_the_stored_amount_with_our_order_id_as_receipt(
    checkout, razorpay
):
    client, order, rzp_order_id = checkout

    # then Razorpay was asked once, with the server's amount and our id as receipt
    (made,) = razorpay.orders.values()
    assert made["id"] == rzp_order_id
    assert (made["amount"], made["currency"], made["receipt"]) == (
        order["amount_paise"],
        "INR",
        order["id"],
    )
    # and asking again reuses it instead of making another
    again = client.post(RAZORPAY_ORDER_URL, {"order_id": order["id"]}, format="json").json()
    assert again == {
        "razorpay_order_id": rzp_order_id,
        "key_id": KEY_ID,
        "amount_paise": order["amount_paise"],
        "currency": "INR",
    }
    assert len(razorpay.orders) == 1
    assert Payment.objects.get().status == Payment.Status.CREATED


def test_cash_orders_and_other_customers_orders_cannot_be_paid_online(
    customer, service_area, razorpay
):
    client = client_for(customer)
    cash = book(client, payment_method="cod")
    stranger = book(client_for(UserFactory()), payment_method="razorpay")

    refused = client.post(RAZORPAY_ORDER_URL, {"order_id": cash["id"]}, format="json")
    hidden = client.post(RAZORPAY_ORDER_URL, {"order_id": stranger["id"]}, format="json")

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "payment_not_expected"
    assert hidden.status_code == 404
    assert razorpay.orders == {} and not Payment.objects.exists()


@pytest.mark.checklist("P7.15")
def test_without_keys_every_payment_endpoint_answers_503(customer, service_area, settings):
    settings.RAZORPAY_KEY_ID = settings.RAZORPAY_KEY_SECRET = settings.RAZORPAY_WEBHOOK_SECRET = ""
    settings.PAYMENTS_ENABLED = False
    client = client_for(customer)
    order = book(client, payment_method="cod")

    answers = [
        client.post(RAZORPAY_ORDER_URL, {"order_id": order["id"]}, format="json"),
        client.post(
            VERIFY_URL,
            {"razorpay_order_id": "o", "razorpay_payment_id": "p", "razorpay_signature": "s"},
            format="json",
        ),
        post_webhook(client, b'{"event": "payment.captured"}', "evt_1", signature="x"),
    ]

    assert [a.status_code for a in answers] == [503, 503, 503]
    assert {a.json()["error"]["code"] for a in answers} == {"payments_unavailable"}
    assert not WebhookEvent.objects.exists()


# --- Verify ----------------------------------------------------------------------------------


@pytest.mark.checklist("P9.7")
def test_a_verified_capture_pays_the_order_and_hands_it_to_dispatch(
    checkout, razorpay, dispatched, on_commit
):
    client, order, rzp_order_id = checkout
    payment = razorpay.capture(rzp_order_id)

    with on_commit():
        response = _verify(client, rzp_order_id, payment["id"])

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["payment_status"]) == (
        "searching_rider",
        "paid",
    )
    stored = Payment.objects.get()
    assert (stored.status, stored.razorpay_payment_id, stored.captured_by) == (
        "captured",
        payment["id"],
        "verify",
    )
    assert _mark_paid_events(order["id"]) == 1
    assert dispatched == [order["id"]]


def test_a_bad_checkout_signature_is_400_and_changes_nothing(checkout, razorpay, dispatched):
    client, order, rzp_order_id = checkout
    payment = razorpay.capture(rzp_order_id)

    forged = checkout_signature(rzp_order_id, payment["id"], secret="not-the-secret")
    response = _verify(client, rzp_order_id, payment["id"], signature=forged)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "signature_invalid"
    assert "razorpay_signature" in response.json()["error"]["fields"]
    assert Payment.objects.get().status == Payment.Status.CREATED
    assert Order.objects.get(pk=order["id"]).payment_status == PaymentStatus.PENDING
    assert _mark_paid_events(order["id"]) == 0 and dispatched == []


def test_a_capture_for_the_wrong_amount_never_pays_and_is_refunded(checkout, razorpay, on_commit):
    client, order, rzp_order_id = checkout
    payment = razorpay.capture(rzp_order_id, amount=order["amount_paise"] - 100)

    with on_commit():
        response = _verify(client, rzp_order_id, payment["id"])

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "payment_mismatch"
    stored_order = Order.objects.get(pk=order["id"])
    assert (stored_order.status, stored_order.payment_status) == ("payment_pending", "pending")
    assert Payment.objects.get().status == Payment.Status.MISMATCH
    assert [r["amount"] for r in razorpay.refund_requests] == [order["amount_paise"] - 100]


# --- Webhooks --------------------------------------------------------------------------------


def test_a_webhook_with_a_bad_signature_is_400_and_not_stored(checkout, razorpay, api_client):
    _, order, rzp_order_id = checkout
    body = _captured_webhook(razorpay.capture(rzp_order_id))

    response = post_webhook(api_client, body, "evt_bad", signature="0" * 64)
    tampered = post_webhook(
        api_client, body.replace(b"captured", b"captureD"), "evt_bad2", signature=None
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "signature_invalid"
    assert tampered.status_code == 200  # signed as sent: the check covers the raw bytes
    assert not WebhookEvent.objects.filter(event_id="evt_bad").exists()
    assert Order.objects.get(pk=order["id"]).payment_status == PaymentStatus.PENDING


@pytest.mark.checklist("P9.7")
def test_a_webhook_before_verify_pays_the_order_and_the_later_verify_is_a_no_op(
    checkout, razorpay, api_client, dispatched, on_commit
):
    client, order, rzp_order_id = checkout
    payment = razorpay.capture(rzp_order_id)

    # when the webhook comes first
    with on_commit():
        hook = post_webhook(api_client, _captured_webhook(payment), "evt_1")
    # then the order is paid by it
    assert hook.status_code == 200 and hook.json() == {"status": "accepted"}
    assert WebhookEvent.objects.get(event_id="evt_1").outcome == "captured"
    assert Payment.objects.get().captured_by == "webhook"

    # when checkout's verify arrives afterwards
    with on_commit():
        verify = _verify(client, rzp_order_id, payment["id"])
    # then it answers paid and changes nothing
    assert verify.status_code == 200
    assert verify.json()["payment_status"] == "paid"
    assert _mark_paid_events(order["id"]) == 1
    assert dispatched == [order["id"]]


def test_a_duplicate_webhook_is_answered_200_and_ignored(
    checkout, razorpay, api_client, on_commit, monkeypatch
):
    _, order, rzp_order_id = checkout
    body = _captured_webhook(razorpay.capture(rzp_order_id))
    processed = []
    from payments.services import webhooks

    original = webhooks.webhook_process
    monkeypatch.setattr(
        webhooks, "webhook_process", lambda **kw: processed.append(kw) or original(**kw)
    )

    with on_commit():
        first = post_webhook(api_client, body, "evt_dup")
        second = post_webhook(api_client, body, "evt_dup")

    assert (first.json(), second.json()) == ({"status": "accepted"}, {"status": "duplicate"})
    assert second.status_code == 200
    assert WebhookEvent.objects.count() == 1 and len(processed) == 1
    assert _mark_paid_events(order["id"]) == 1


def test_a_payment_failed_webhook_marks_the_try_failed_and_a_later_capture_still_pays(
    checkout, razorpay, api_client, on_commit
):
    client, order, rzp_order_id = checkout
    failed = razorpay.capture(rzp_order_id, status="failed")
    with on_commit():
        post_webhook(api_client, webhook_body("payment.failed", payment=failed), "evt_f")
    assert Order.objects.get(pk=order["id"]).payment_status == PaymentStatus.FAILED

    retry = razorpay.capture(rzp_order_id)
    with on_commit():
        response = _verify(client, rzp_order_id, retry["id"])

    assert response.json()["payment_status"] == "paid"


# --- Cancellation and refunds ----------------------------------------------------------------


def test_a_capture_arriving_after_cancellation_is_refunded(
    checkout, razorpay, api_client, dispatched, on_commit
):
    client, order, rzp_order_id = checkout
    # given the customer cancelled before paying
    assert client.post(order_url(order["id"], "cancel"), {}, format="json").status_code == 200
    # when the capture arrives late
    payment = razorpay.capture(rzp_order_id)
    with on_commit():
        post_webhook(api_client, _captured_webhook(payment), "evt_late")

    # then the money goes back and the order stays cancelled
    stored = Order.objects.get(pk=order["id"])
    assert (stored.status, stored.payment_status) == ("cancelled", "refunded")
    assert [(r["payment_id"], r["amount"]) for r in razorpay.refund_requests] == [
        (payment["id"], order["amount_paise"])
    ]
    assert Refund.objects.get().status == Refund.Status.PROCESSED
    assert dispatched == []


def test_cancelling_a_paid_order_refunds_it_and_a_retried_refund_reuses_its_key(
    checkout, razorpay, on_commit
):
    client, order, rzp_order_id = checkout
    payment = razorpay.capture(rzp_order_id)
    with on_commit():
        _verify(client, rzp_order_id, payment["id"])
    # given Razorpay fails the first refund call
    razorpay.refund_failures = 1

    # when the customer cancels (the refund task retries after the 500)
    with on_commit():
        response = client.post(order_url(order["id"], "cancel"), {"reason": "late"}, format="json")

    # then two calls went out with one idempotency key, and one refund exists
    assert response.status_code == 200
    assert len(razorpay.refund_requests) == 2
    refund = Refund.objects.get()
    assert razorpay.distinct_refund_keys() == {refund.idempotency_key}
    assert len(razorpay.refunds_by_key) == 1
    assert (refund.status, refund.attempts) == (Refund.Status.PROCESSED, 2)
    assert Order.objects.get(pk=order["id"]).payment_status == PaymentStatus.REFUNDED

    # and running the task again (a redelivered message) sends nothing more
    send_refund.delay(str(refund.pk))
    assert len(razorpay.refund_requests) == 2


def test_a_pending_refund_is_settled_by_the_refund_processed_webhook(
    checkout, razorpay, api_client, on_commit
):
    client, order, rzp_order_id = checkout
    payment = razorpay.capture(rzp_order_id)
    razorpay.refund_status = "pending"
    with on_commit():
        _verify(client, rzp_order_id, payment["id"])
        client.post(order_url(order["id"], "cancel"), {}, format="json")
    refund = Refund.objects.get()
    assert refund.status == Refund.Status.SUBMITTED
    assert Order.objects.get(pk=order["id"]).payment_status == PaymentStatus.REFUND_PENDING

    entity = {"id": refund.razorpay_refund_id, "payment_id": payment["id"], "status": "processed"}
    with on_commit():
        post_webhook(api_client, webhook_body("refund.processed", refund=entity), "evt_r")

    assert Order.objects.get(pk=order["id"]).payment_status == PaymentStatus.REFUNDED


def test_a_refund_that_fails_at_razorpay_leaves_the_order_refund_pending_and_alerts_ops(
    checkout, razorpay, api_client, on_commit
):
    # given a cancelled paid order whose refund Razorpay accepted but has not processed
    client, order, rzp_order_id = checkout
    payment = razorpay.capture(rzp_order_id)
    razorpay.refund_status = "pending"
    with on_commit():
        _verify(client, rzp_order_id, payment["id"])
        client.post(order_url(order["id"], "cancel"), {}, format="json")
    refund = Refund.objects.get()
    entity = {"id": refund.razorpay_refund_id, "payment_id": payment["id"], "status": "failed"}

    def refund_fails():
        with on_commit():
            post_webhook(api_client, webhook_body("refund.failed", refund=entity), "evt_rf")

    async def consoles_hear():
        """What the ops group (the consoles' sockets) hears while the refund fails."""
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(OPS_GROUP, channel)
        try:
            await sync_to_async(refund_fails)()
            while True:
                message = await asyncio.wait_for(layer.receive(channel), timeout=5)
                if message["type"] == "ops.alerts_changed":
                    return message
        finally:
            await layer.group_discard(OPS_GROUP, channel)

    # when Razorpay reports that the refund failed
    message = async_to_sync(consoles_hear)()

    # then the refund is failed and the order is not called refunded: the money is not back
    assert Refund.objects.get().status == Refund.Status.FAILED
    assert Order.objects.get(pk=order["id"]).payment_status == PaymentStatus.REFUND_PENDING
    # and the ops consoles are told at once (they re-read their snapshot, which has the alert)
    assert message == {
        "type": "ops.alerts_changed",
        "alert": "refund_failed",
        "order_id": order["id"],
    }
    assert [alert.kind for alert in console_alerts()] == ["refund_failed"]


def test_refunds_from_the_admin_need_the_refund_permission(checkout, razorpay, on_commit):
    from django.test import Client

    client, order, rzp_order_id = checkout
    payment = razorpay.capture(rzp_order_id)
    with on_commit():
        _verify(client, rzp_order_id, payment["id"])
    action = {"action": "refund_selected", "_selected_action": [order["id"]]}

    # a dispatcher (staff, can see orders, cannot refund) gets no refund
    dispatcher = Client()
    dispatcher.force_login(ops_user("dispatcher"))
    with on_commit():
        dispatcher.post("/admin/orders/order/", action)
    assert razorpay.refund_requests == []

    # finance can
    finance = Client()
    finance.force_login(ops_user("finance"))
    with on_commit():
        answer = finance.post("/admin/orders/order/", action)
    assert answer.status_code == 302
    assert [r["payment_id"] for r in razorpay.refund_requests] == [payment["id"]]
    stored = Order.objects.get(pk=order["id"])
    assert (stored.status, stored.payment_status) == ("searching_rider", "refunded")


# --- Reconciliation --------------------------------------------------------------------------


def test_the_reconciler_settles_captures_nobody_reported(checkout, razorpay, dispatched, on_commit):
    _, order, rzp_order_id = checkout
    razorpay.capture(rzp_order_id)

    # too young: left for verify and the webhook
    with on_commit():
        reconcile_pending_payments.delay()
    assert Payment.objects.get().status == Payment.Status.CREATED

    with time_machine.travel(timezone.now() + timedelta(minutes=16)), on_commit():
        reconcile_pending_payments.delay()

    stored = Payment.objects.get()
    assert (stored.status, stored.captured_by) == ("captured", "reconciler")
    assert Order.objects.get(pk=order["id"]).status == OrderStatus.SEARCHING_RIDER
    assert dispatched == [order["id"]]

    # and a second run changes nothing
    with time_machine.travel(timezone.now() + timedelta(minutes=30)), on_commit():
        reconcile_pending_payments.delay()
    assert _mark_paid_events(order["id"]) == 1


def test_a_refund_and_a_webhook_whose_tasks_never_ran_are_picked_up_by_the_reconciler(
    checkout, razorpay, api_client, on_commit
):
    # given a paid order cancelled, and a webhook received, while the broker was down: both
    # are saved, but their tasks never reached a worker (no on-commit work runs here)
    client, order, rzp_order_id = checkout
    payment = razorpay.capture(rzp_order_id)
    with on_commit():
        _verify(client, rzp_order_id, payment["id"])
    assert client.post(order_url(order["id"], "cancel"), {}, format="json").status_code == 200
    post_webhook(api_client, webhook_body("payment.failed", payment=payment), "evt_lost")
    refund = Refund.objects.get()
    assert (refund.status, razorpay.refund_requests) == (Refund.Status.PENDING, [])
    assert WebhookEvent.objects.get(event_id="evt_lost").processed_at is None

    # when the reconciler runs while they are still young, nothing is sent twice in a hurry
    with on_commit():
        reconcile_pending_payments.delay()
    assert razorpay.refund_requests == []

    # and when it runs after PAYMENT_RECONCILE_AFTER_MINUTES, both are done, once
    with time_machine.travel(timezone.now() + timedelta(minutes=16)), on_commit():
        reconcile_pending_payments.delay()
    assert Refund.objects.get().status == Refund.Status.PROCESSED
    assert len(razorpay.refund_requests) == 1
    assert WebhookEvent.objects.get(event_id="evt_lost").processed_at is not None
    assert Order.objects.get(pk=order["id"]).payment_status == PaymentStatus.REFUNDED
