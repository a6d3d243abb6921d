"""Reads for the ops console: the snapshot it starts from, the alerts, one order in detail.

The console loads `console_snapshot` once, then follows the `ops` WebSocket group
(core.realtime) and loads the snapshot again every half minute and after a reconnect:
the alerts below, which depend on time and on rows no socket message describes (refunds,
payments), are fresh to within that. Every list is bounded, so a bad day costs a bigger page,
not a timeout.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from core.exceptions import ApiError
from delivery.models import DispatchRound, Offer
from delivery.selectors import riders_assignable_near
from ops.permissions import assign_allowed
from ops.serializers import (
    alert_json,
    event_json,
    iso,
    offer_json,
    order_summary,
    payment_json,
    rider_summary,
)
from orders.errors import OrderError
from orders.models import CARRYING_STATUSES, Order, OrderEvent, OrderStatus, PaymentStatus
from orders.selectors import service_area_list_active
from payments.models import Payment, Refund
from riders.models import Rider, RiderLocation

# A parked rider's GPS wanders within tens of metres; moving less than this is not moving.
STATIONARY_RADIUS_M = 100
# The path drawn behind a rider on a delivery: since the delivery began, at most this much.
TRAIL_MINUTES = 30
TRAIL_POINTS = 120
MAX_RIDERS = 2000
MAX_ORDERS = 500
MAX_ALERTS_PER_KIND = 100
MAX_CANDIDATES = 20

ACTIVE_STATUSES = [OrderStatus.SEARCHING_RIDER, *CARRYING_STATUSES]
MAP_RIDER_STATUSES = [Rider.Status.ONLINE, Rider.Status.ON_DELIVERY]


# --- Orders and riders ---------------------------------------------------------------------------


def _searching_since() -> Coalesce:
    """When the order last started searching (a released order starts again); its creation
    time for an order without that event."""
    started = (
        OrderEvent.objects.filter(order=OuterRef("pk"), to_status=OrderStatus.SEARCHING_RIDER)
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    return Coalesce(Subquery(started), F("created_at"))


def orders_active() -> QuerySet[Order]:
    """Orders searching for a rider or in a rider's hands, oldest first."""
    return (
        Order.objects.filter(status__in=ACTIVE_STATUSES)
        .select_related("quote", "rider__user")
        .annotate(searching_since=_searching_since())
        .order_by("created_at", "id")
    )


def riders_on_map() -> QuerySet[Rider]:
    """Riders at work: online (idle) or on a delivery."""
    return Rider.objects.filter(status__in=MAP_RIDER_STATUSES).select_related("user").order_by("pk")


def rider_trails(orders: list[Order], *, now: datetime) -> dict[str, list[list[float]]]:
    """Each carrying order's rider path, oldest fix first: [[lat, lng], ...].

    From the location trail, since the rider's delivery began (Rider.status_changed_at) and
    within the last TRAIL_MINUTES, at most TRAIL_POINTS per rider. One query for all riders.
    """
    carried = {
        order.rider_id: order
        for order in orders
        if order.status in CARRYING_STATUSES and order.rider_id is not None
    }
    if not carried:
        return {}
    fixes = (
        RiderLocation.objects.filter(
            rider_id__in=list(carried), recorded_at__gte=now - timedelta(minutes=TRAIL_MINUTES)
        )
        .annotate(
            newest_first=Window(
                RowNumber(), partition_by=[F("rider_id")], order_by=F("recorded_at").desc()
            )
        )
        .filter(newest_first__lte=TRAIL_POINTS)
        .order_by("rider_id", "recorded_at")
        .values_list("rider_id", "point", "recorded_at")
    )
    trails: dict[str, list[list[float]]] = {str(order.pk): [] for order in carried.values()}
    for rider_id, point, recorded_at in fixes:
        order = carried[rider_id]
        began = order.rider.status_changed_at
        if began is None or recorded_at >= began:
            trails[str(order.pk)].append([point.y, point.x])
    return trails


# --- Alerts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    kind: str  # no_rider, rider_stationary, paid_not_dispatched, refund_failed
    order_id: str
    since: datetime
    detail: str
    rider_id: str | None = None


def _minutes(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() // 60))


def alerts_no_rider(*, now: datetime) -> list[Alert]:
    """Orders searching for a rider for OPS_ALERT_NO_RIDER_MINUTES or more."""
    cutoff = now - timedelta(minutes=settings.OPS_ALERT_NO_RIDER_MINUTES)
    waiting = (
        Order.objects.filter(status=OrderStatus.SEARCHING_RIDER)
        .annotate(searching_since=_searching_since())
        .filter(searching_since__lte=cutoff)
        .order_by("searching_since")[:MAX_ALERTS_PER_KIND]
    )
    return [
        Alert(
            "no_rider",
            str(order.pk),
            order.searching_since,
            f"No rider for {_minutes(now - order.searching_since)} min",
        )
        for order in waiting
    ]


# A rider on a delivery whose positions, since the last fix before the window, all lie within
# STATIONARY_RADIUS_M of where they are now; or who has sent nothing since the window began (the
# lower bound is then their last fix, the only one considered). Only riders on the delivery
# for the whole window: one assigned a minute ago is not "stuck". The trail's
# (rider, recorded_at) index serves both subqueries.
_STATIONARY_SQL = f"""
SELECT o.id, r.id, r.last_location_at, (
    SELECT max(ST_Distance(fix.point, r.last_location))
    FROM {RiderLocation._meta.db_table} AS fix
    WHERE fix.rider_id = r.id
      AND fix.recorded_at >= coalesce(
        (SELECT max(before.recorded_at) FROM {RiderLocation._meta.db_table} AS before
         WHERE before.rider_id = r.id AND before.recorded_at <= %(since)s),
        %(since)s)
) AS moved_m
FROM {Order._meta.db_table} AS o
JOIN {Rider._meta.db_table} AS r ON r.id = o.rider_id
WHERE o.status = ANY(%(carrying)s)
  AND r.status_changed_at <= %(since)s
ORDER BY r.last_location_at NULLS FIRST
LIMIT %(limit)s
"""  # noqa: S608 - the only interpolations are the models' table names; values are bound


def alerts_rider_stationary(*, now: datetime) -> list[Alert]:
    """Riders on a delivery who have not moved for OPS_ALERT_STATIONARY_MINUTES."""
    window = timedelta(minutes=settings.OPS_ALERT_STATIONARY_MINUTES)
    since = now - window
    with connection.cursor() as cursor:
        cursor.execute(
            _STATIONARY_SQL,
            {
                "since": since,
                "carrying": [str(status) for status in CARRYING_STATUSES],
                "limit": MAX_ALERTS_PER_KIND * 4,
            },
        )
        rows = cursor.fetchall()
    alerts = []
    for order_id, rider_id, last_seen, moved_m in rows:
        if last_seen is None:
            detail, start = "No position since the delivery began", since
        elif last_seen <= since:
            detail, start = f"No position for {_minutes(now - last_seen)} min", last_seen
        elif moved_m is not None and moved_m < STATIONARY_RADIUS_M:
            detail = f"Within {STATIONARY_RADIUS_M} m for {_minutes(window)}+ min"
            start = since
        else:
            continue
        alerts.append(Alert("rider_stationary", str(order_id), start, detail, str(rider_id)))
    return alerts[:MAX_ALERTS_PER_KIND]


def alerts_paid_not_dispatched(*, now: datetime) -> list[Alert]:
    """Paid orders that dispatch has not picked up after OPS_ALERT_UNDISPATCHED_MINUTES.

    Either the payment was captured but the order never moved on to searching (mark_paid did
    not finish), or the order searches but no dispatch round was ever run for it (a lost task).
    """
    cutoff = now - timedelta(minutes=settings.OPS_ALERT_UNDISPATCHED_MINUTES)
    captured = Payment.objects.filter(order=OuterRef("pk"), status=Payment.Status.CAPTURED)
    dispatched = DispatchRound.objects.filter(order=OuterRef("pk"))
    stuck_before_search = Q(status__in=[OrderStatus.CREATED, OrderStatus.PAYMENT_PENDING]) & (
        Q(payment_status=PaymentStatus.PAID) | Exists(captured)
    )
    searching_never_dispatched = Q(
        status=OrderStatus.SEARCHING_RIDER, payment_status=PaymentStatus.PAID
    ) & ~Exists(dispatched)
    orders = (
        Order.objects.filter(stuck_before_search | searching_never_dispatched)
        .filter(updated_at__lte=cutoff)
        .order_by("updated_at")[:MAX_ALERTS_PER_KIND]
    )
    return [
        Alert(
            "paid_not_dispatched",
            str(order.pk),
            order.updated_at,
            "Paid, but never offered to a rider"
            if order.status == OrderStatus.SEARCHING_RIDER
            else f"Paid, still {order.get_status_display().lower()}",
        )
        for order in orders
    ]


def alerts_refund_failed(*, now: datetime) -> list[Alert]:
    """Refunds Razorpay refused or failed, for captures with no other refund under way or done."""
    live = Refund.objects.exclude(status=Refund.Status.FAILED).values("razorpay_payment_id")
    failed = (
        Refund.objects.filter(status=Refund.Status.FAILED)
        .exclude(razorpay_payment_id__in=live)
        .select_related("payment")
        .order_by("-updated_at")[:MAX_ALERTS_PER_KIND]
    )
    alerts, seen = [], set()
    for refund in failed:
        order_id = str(refund.payment.order_id)
        if order_id in seen:
            continue
        seen.add(order_id)
        reason = refund.last_error or "no reason given"
        alerts.append(
            Alert("refund_failed", order_id, refund.updated_at, f"Refund failed: {reason}")
        )
    return alerts


def console_alerts(*, now: datetime | None = None) -> list[Alert]:
    """Every alert, oldest first."""
    now = now or timezone.now()
    alerts = [
        *alerts_no_rider(now=now),
        *alerts_rider_stationary(now=now),
        *alerts_paid_not_dispatched(now=now),
        *alerts_refund_failed(now=now),
    ]
    return sorted(alerts, key=lambda alert: alert.since)


# --- The snapshot and the order panel ------------------------------------------------------------


def console_snapshot(*, user, now: datetime | None = None) -> dict:
    """Everything the console draws on load; the socket's messages update it afterwards."""
    now = now or timezone.now()
    orders = list(orders_active()[:MAX_ORDERS])
    trails = rider_trails(orders, now=now)
    searching = sorted(
        (order for order in orders if order.status == OrderStatus.SEARCHING_RIDER),
        key=lambda order: order.searching_since,
    )
    return {
        "now": iso(now),
        "settings": {
            "stale_after_seconds": settings.RIDER_LOCATION_MAX_AGE_SECONDS,
            "no_rider_after_seconds": settings.OPS_ALERT_NO_RIDER_MINUTES * 60,
            "stationary_after_seconds": settings.OPS_ALERT_STATIONARY_MINUTES * 60,
        },
        "permissions": {"assign": assign_allowed(user)},
        "riders": [rider_summary(rider, now=now) for rider in riders_on_map()[:MAX_RIDERS]],
        "orders": [
            {**order_summary(order), "path": trails.get(str(order.pk), [])} for order in orders
        ],
        "queue": [
            {
                "order_id": str(order.pk),
                "waiting_seconds": int((now - order.searching_since).total_seconds()),
            }
            for order in searching
        ],
        "alerts": [alert_json(alert) for alert in console_alerts(now=now)],
        "areas": [
            {"name": area.name, "geometry": json.loads(area.area.geojson)}
            for area in service_area_list_active()
        ],
    }


def _events(order: Order) -> list[dict]:
    events = OrderEvent.objects.filter(order=order).select_related("actor").order_by("created_at")
    return [event_json(event) for event in events]


def _offers(order: Order) -> list[dict]:
    offers = Offer.objects.filter(order=order).select_related("rider__user").order_by("created_at")
    return [offer_json(offer) for offer in offers]


def _payments(order: Order, *, with_refunds: bool) -> list[dict]:
    payments = (
        Payment.objects.filter(order=order).prefetch_related("refunds").order_by("created_at")
    )
    return [payment_json(payment, with_refunds=with_refunds) for payment in payments]


def _candidates(order: Order, *, now: datetime) -> list[dict]:
    riders = riders_assignable_near(
        point=order.quote.pickup_location, customer_id=order.customer_id
    )[:MAX_CANDIDATES]
    return [
        {**rider_summary(rider, now=now), "distance_m": round(rider.distance.m)} for rider in riders
    ]


def order_detail(*, user, order_id, now: datetime | None = None) -> dict:
    """The order panel: the order, its events, offers and payments (each as far as the user's
    permissions go: null when not), and the riders it may be assigned to by hand."""
    now = now or timezone.now()
    order = orders_active_or_ended().filter(pk=order_id).first()
    if order is None:
        raise ApiError(OrderError.NOT_FOUND)
    can_assign = assign_allowed(user)
    return {
        "order": order_summary(order),
        "events": _events(order) if user.has_perm("orders.view_orderevent") else None,
        "offers": _offers(order) if user.has_perm("delivery.view_offer") else None,
        "payments": (
            _payments(order, with_refunds=user.has_perm("payments.view_refund"))
            if user.has_perm("payments.view_payment")
            else None
        ),
        "can_assign": can_assign and order.status == OrderStatus.SEARCHING_RIDER,
        "can_unassign": can_assign and order.status == OrderStatus.RIDER_ASSIGNED,
        "candidates": (
            _candidates(order, now=now)
            if can_assign and order.status == OrderStatus.SEARCHING_RIDER
            else []
        ),
    }


def orders_active_or_ended() -> QuerySet[Order]:
    """Any order, with what order_summary needs: the panel also shows orders that just ended."""
    return Order.objects.select_related("quote", "rider__user").annotate(
        searching_since=_searching_since()
    )
