"""The console's alerts: no rider after N minutes, a rider not moving on a delivery, paid but
not dispatched, and a refund that failed. Each with the cases that must not raise it."""

from datetime import timedelta

import pytest
from django.contrib.gis.geos import Point
from django.utils import timezone

from delivery.models import DispatchRound
from delivery.tests.support import METRES_PER_DEGREE_LAT, searching_order
from ops.selectors import (
    alerts_no_rider,
    alerts_paid_not_dispatched,
    alerts_refund_failed,
    alerts_rider_stationary,
    console_alerts,
)
from ops.serializers import alert_json
from orders.models import Order, OrderEvent, OrderStatus, PaymentMethod, PaymentStatus
from orders.tests.factories import PICKUP, OrderFactory
from payments.models import Payment, Refund
from riders.models import Rider, RiderLocation

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _thresholds(settings):
    settings.OPS_ALERT_NO_RIDER_MINUTES = 5
    settings.OPS_ALERT_STATIONARY_MINUTES = 10
    settings.OPS_ALERT_UNDISPATCHED_MINUTES = 2


def ago(**delta):
    return timezone.now() - timedelta(**delta)


def kinds_for(alerts) -> dict[str, str]:
    return {alert.order_id: alert.kind for alert in alerts}


# --- No rider ----------------------------------------------------------------------------------


def searching_since(moment) -> Order:
    order = searching_order()
    OrderEvent.objects.create(
        order=order, action="confirm_cash", to_status="searching_rider", actor_kind="system"
    )
    OrderEvent.objects.filter(order=order).update(created_at=moment)
    return order


def test_an_order_searching_longer_than_the_setting_raises_no_rider():
    late = searching_since(ago(minutes=6))
    searching_since(ago(minutes=4))

    [alert] = alerts_no_rider(now=timezone.now())

    assert (alert.kind, alert.order_id) == ("no_rider", str(late.pk))
    assert alert.detail == "No rider for 6 min"


def test_the_wait_counts_from_the_last_time_the_order_started_searching():
    # given an order that searched long ago, was assigned, and was released a minute ago
    order = searching_since(ago(minutes=30))
    OrderEvent.objects.create(
        order=order,
        action="release",
        from_status="rider_assigned",
        to_status="searching_rider",
        actor_kind="system",
    )
    OrderEvent.objects.filter(order=order, action="release").update(created_at=ago(minutes=1))

    assert alerts_no_rider(now=timezone.now()) == []


def test_an_order_no_longer_searching_raises_nothing():
    order = searching_since(ago(minutes=20))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED)

    assert alerts_no_rider(now=timezone.now()) == []


# --- A rider not moving on a delivery ----------------------------------------------------------


def north(metres: float) -> Point:
    return Point(PICKUP["lng"], PICKUP["lat"] + metres / METRES_PER_DEGREE_LAT, srid=4326)


def on_delivery(*, since, fixes: list[tuple[float, float]]) -> Order:
    """A carried order whose rider has been on it `since`, with trail fixes (minutes ago,
    metres north of the pickup); the newest is the rider's latest position."""
    order = OrderFactory(status=OrderStatus.PICKED_UP)
    rider = order.rider
    for minutes_ago, metres in fixes:
        RiderLocation.objects.create(
            rider=rider, point=north(metres), recorded_at=ago(minutes=minutes_ago)
        )
    latest = min(fixes, default=None)
    Rider.objects.filter(pk=rider.pk).update(
        status_changed_at=since,
        last_location=north(latest[1]) if latest else None,
        last_location_at=ago(minutes=latest[0]) if latest else None,
    )
    return order


def test_a_rider_within_a_few_metres_for_the_whole_window_raises_stationary():
    stuck = on_delivery(since=ago(minutes=30), fixes=[(14, 20), (9, 0), (5, 30), (0.1, 10)])

    [alert] = alerts_rider_stationary(now=timezone.now())

    assert (alert.kind, alert.order_id) == ("rider_stationary", str(stuck.pk))
    assert alert.rider_id == str(stuck.rider_id)
    assert alert.detail.startswith("Within 100 m")


def test_a_rider_who_moved_in_the_window_raises_nothing():
    # 600 m in the last few minutes; and one who moved between the last fix before the window
    # and the first fix inside it
    on_delivery(since=ago(minutes=30), fixes=[(14, 0), (8, 0), (3, 600), (0.1, 610)])
    on_delivery(since=ago(minutes=30), fixes=[(12, 0), (0.1, 900)])

    assert alerts_rider_stationary(now=timezone.now()) == []


def test_a_rider_assigned_within_the_window_is_not_yet_stationary():
    on_delivery(since=ago(minutes=3), fixes=[(12, 0), (6, 0), (0.1, 0)])

    assert alerts_rider_stationary(now=timezone.now()) == []


def test_a_silent_rider_on_a_delivery_raises_stationary_with_how_long():
    silent = on_delivery(since=ago(minutes=40), fixes=[(25, 0), (22, 300)])
    nowhere = on_delivery(since=ago(minutes=40), fixes=[])

    alerts = {alert.order_id: alert for alert in alerts_rider_stationary(now=timezone.now())}

    assert alerts[str(silent.pk)].detail == "No position for 22 min"
    assert alerts[str(nowhere.pk)].detail == "No position since the delivery began"


def test_a_finished_delivery_raises_nothing():
    order = on_delivery(since=ago(minutes=30), fixes=[(14, 0), (0.1, 0)])
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.DELIVERED)

    assert alerts_rider_stationary(now=timezone.now()) == []


# --- Paid, not dispatched ----------------------------------------------------------------------


def razorpay_order(status: str, payment_status: str, *, updated) -> Order:
    order = OrderFactory(
        status=status, payment_method=PaymentMethod.RAZORPAY, payment_status=payment_status
    )
    Order.objects.filter(pk=order.pk).update(updated_at=updated)
    return order


def captured_payment(order: Order, suffix: str) -> Payment:
    return Payment.objects.create(
        order=order,
        razorpay_order_id=f"order_{suffix}",
        razorpay_payment_id=f"pay_{suffix}",
        amount_paise=order.amount_paise,
        currency="INR",
        status=Payment.Status.CAPTURED,
        captured_at=timezone.now(),
        captured_by="webhook",
    )


def test_a_capture_on_an_order_still_pending_raises_paid_not_dispatched():
    stuck = razorpay_order(
        OrderStatus.PAYMENT_PENDING, PaymentStatus.PENDING, updated=ago(minutes=5)
    )
    captured_payment(stuck, "stuck")
    fresh = razorpay_order(
        OrderStatus.PAYMENT_PENDING, PaymentStatus.PENDING, updated=ago(seconds=30)
    )
    captured_payment(fresh, "fresh")
    razorpay_order(OrderStatus.PAYMENT_PENDING, PaymentStatus.PENDING, updated=ago(minutes=5))

    [alert] = alerts_paid_not_dispatched(now=timezone.now())

    assert (alert.kind, alert.order_id) == ("paid_not_dispatched", str(stuck.pk))
    assert alert.detail == "Paid, still payment pending"


def test_a_paid_searching_order_with_no_dispatch_round_raises_paid_not_dispatched():
    never = razorpay_order(OrderStatus.SEARCHING_RIDER, PaymentStatus.PAID, updated=ago(minutes=5))
    offered = razorpay_order(
        OrderStatus.SEARCHING_RIDER, PaymentStatus.PAID, updated=ago(minutes=5)
    )
    DispatchRound.objects.create(order=offered, number=1, radius_m=3000)
    cash = searching_order()
    Order.objects.filter(pk=cash.pk).update(updated_at=ago(minutes=5))

    assert kinds_for(alerts_paid_not_dispatched(now=timezone.now())) == {
        str(never.pk): "paid_not_dispatched"
    }


# --- Refund failed -----------------------------------------------------------------------------


def refund(payment: Payment, status: str, key: str, error: str = "") -> Refund:
    return Refund.objects.create(
        payment=payment,
        razorpay_payment_id=payment.razorpay_payment_id,
        idempotency_key=key,
        amount_paise=payment.amount_paise,
        status=status,
        last_error=error,
    )


def test_a_failed_refund_with_nothing_after_it_raises_refund_failed():
    failed = razorpay_order(OrderStatus.CANCELLED, PaymentStatus.REFUND_PENDING, updated=ago())
    refund(captured_payment(failed, "f1"), Refund.Status.FAILED, "k1", "BAD_REQUEST_ERROR")
    retried = razorpay_order(OrderStatus.CANCELLED, PaymentStatus.REFUNDED, updated=ago())
    payment = captured_payment(retried, "f2")
    refund(payment, Refund.Status.FAILED, "k2", "timeout")
    refund(payment, Refund.Status.PROCESSED, "k3")

    [alert] = alerts_refund_failed(now=timezone.now())

    assert (alert.kind, alert.order_id) == ("refund_failed", str(failed.pk))
    assert alert.detail == "Refund failed: BAD_REQUEST_ERROR"


# --- All together --------------------------------------------------------------------------------


def test_console_alerts_lists_every_kind_oldest_first():
    late = searching_since(ago(minutes=9))
    stuck = on_delivery(since=ago(minutes=30), fixes=[(14, 0), (0.1, 0)])
    failed = razorpay_order(OrderStatus.CANCELLED, PaymentStatus.REFUND_PENDING, updated=ago())
    refund(captured_payment(failed, "all"), Refund.Status.FAILED, "all")

    alerts = console_alerts(now=timezone.now())

    assert [(alert.kind, alert.order_id) for alert in alerts] == [
        ("rider_stationary", str(stuck.pk)),
        ("no_rider", str(late.pk)),
        ("refund_failed", str(failed.pk)),
    ]
    assert all(alert_json(alert)["since"].endswith("+05:30") for alert in alerts)
