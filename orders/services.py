"""Writes for orders: quotes, booking, cancelling, rating, and handing orders to dispatch.

Rows are locked in the project's lock order (core.locks).
"""

import hashlib
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.gis.geos import Point
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.models import User
from core.exceptions import ApiError, CommonError
from orders.errors import OrderError
from orders.models import (
    TERMINAL_STATUSES,
    ActorKind,
    Order,
    OrderEvent,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    Quote,
    Rating,
)
from orders.pricing import price_trip, tariff_for_area, trip_distance_m
from orders.selectors import order_get_for_customer, service_areas_for_trip
from orders.state import Action, Actor, order_transition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Place:
    lat: float
    lng: float
    address: str

    @property
    def point(self) -> Point:
        return Point(self.lng, self.lat, srid=4326)


def _require_customer(user: User) -> None:
    if not user.is_customer:
        raise ApiError(OrderError.NOT_CUSTOMER)


def quote_create(
    *, customer: User, pickup: Place, drop: Place, package_description: str, weight_grams: int
) -> Quote:
    """Prices a trip inside one active service area; refuses points outside every area."""
    _require_customer(customer)
    areas = list(service_areas_for_trip(pickup.point, drop.point))
    fields = {}
    if not any(area.covers_pickup for area in areas):
        fields["pickup"] = ["This place is outside our service area."]
    if not any(area.covers_drop for area in areas):
        fields["drop"] = ["This place is outside our service area."]
    shared = [area for area in areas if area.covers_pickup and area.covers_drop]
    if not fields and not shared:
        fields["drop"] = ["Pickup and drop must lie in the same service area."]
    if fields:
        raise ApiError(OrderError.OUTSIDE_SERVICE_AREA, fields=fields)
    area = shared[0]
    distance_m = trip_distance_m(pickup.point, drop.point)
    if distance_m < settings.ORDER_MIN_DISTANCE_M:
        # A trip to nowhere would still pay its rider: the minimum fare below the rider's pay.
        raise ApiError(
            OrderError.TRIP_TOO_SHORT,
            fields={"drop": [f"At least {settings.ORDER_MIN_DISTANCE_M} m from the pickup."]},
        )
    breakdown = price_trip(
        terms=tariff_for_area(area), distance_m=distance_m, weight_grams=weight_grams
    )
    return Quote.objects.create(
        customer=customer,
        service_area=area,
        pickup_location=pickup.point,
        pickup_address=pickup.address,
        drop_location=drop.point,
        drop_address=drop.address,
        package_description=package_description,
        package_weight_grams=weight_grams,
        distance_m=distance_m,
        currency=settings.CURRENCY,
        total_paise=sum(line["amount_paise"] for line in breakdown),
        breakdown=breakdown,
        expires_at=timezone.now() + timedelta(seconds=settings.QUOTE_TTL_SECONDS),
    )


def delivery_code_hmac(*, order_id, code: str) -> str:
    return salted_hmac(
        "orders.delivery_code",
        f"{order_id}:{code}",
        secret=settings.DELIVERY_CODE_HMAC_KEY,
        algorithm="sha256",
    ).hexdigest()


def _fingerprint(*, quote_id, payment_method: str, notes: str) -> str:
    canonical = json.dumps(
        {"quote_id": str(quote_id), "payment_method": payment_method, "notes": notes},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(*, customer: User, idempotency_key: str, fingerprint: str) -> Order | None:
    order = Order.objects.filter(customer=customer, idempotency_key=idempotency_key).first()
    if order is not None and order.request_fingerprint != fingerprint:
        raise ApiError(OrderError.IDEMPOTENCY_KEY_REUSED)
    return order


def order_create(
    *,
    customer: User,
    quote_id,
    payment_method: str,
    notes: str = "",
    idempotency_key: str | None = None,
) -> tuple[Order, bool]:
    """Books an order from the customer's unexpired quote. Returns (order, created).

    With an Idempotency-Key, a retry of the same request returns the order the first one made
    (created False); the same key with a different request is refused. Locks the quote row so
    that two concurrent bookings of one quote are serialised. A new order comes with its quote
    loaded (what the API shows of it); a replayed one is returned as `_replay` read it.
    """
    _require_customer(customer)
    if payment_method == PaymentMethod.RAZORPAY:
        payments_require_enabled()
    fingerprint = _fingerprint(quote_id=quote_id, payment_method=payment_method, notes=notes)
    try:
        with transaction.atomic():
            quote = Quote.objects.select_for_update().filter(pk=quote_id, customer=customer).first()
            if idempotency_key:
                # After the quote lock: a concurrent twin of this request has committed by now.
                existing = _replay(
                    customer=customer, idempotency_key=idempotency_key, fingerprint=fingerprint
                )
                if existing is not None:
                    return existing, False
            if quote is None:
                raise ApiError(CommonError.INVALID, fields={"quote_id": ["No such quote."]})
            _require_room_for_an_order(customer)
            if quote.expires_at <= timezone.now():
                raise ApiError(
                    OrderError.QUOTE_EXPIRED,
                    fields={"quote_id": ["This quote has expired."]},
                )
            if Order.objects.filter(quote=quote).exists():
                raise ApiError(
                    OrderError.QUOTE_ALREADY_USED,
                    fields={"quote_id": ["This quote is already booked."]},
                )
            order_id = uuid.uuid4()
            code = f"{secrets.randbelow(10_000):04d}"
            online = payment_method == PaymentMethod.RAZORPAY
            order = Order.objects.create(
                id=order_id,
                customer=customer,
                quote=quote,
                amount_paise=quote.total_paise,
                currency=quote.currency,
                payment_method=payment_method,
                payment_status=PaymentStatus.PENDING if online else PaymentStatus.NONE,
                notes=notes,
                delivery_code=code,
                delivery_code_hmac=delivery_code_hmac(order_id=order_id, code=code),
                idempotency_key=idempotency_key or "",
                request_fingerprint=fingerprint,
            )
            OrderEvent.objects.create(
                order=order,
                action="create",
                to_status=OrderStatus.CREATED,
                actor_kind=ActorKind.CUSTOMER,
                actor=customer,
            )
            order = order_transition(
                order_id=order.pk,
                action=Action.REQUEST_PAYMENT if online else Action.CONFIRM_CASH,
                actor=Actor.system(),
            )
            order.quote = quote
    except IntegrityError:
        # A concurrent request with the same key won the insert; answer as its retry.
        if idempotency_key:
            existing = _replay(
                customer=customer, idempotency_key=idempotency_key, fingerprint=fingerprint
            )
            if existing is not None:
                return existing, False
        raise
    return order, True


def payments_require_enabled() -> None:
    """Online payment is offered only where PAYMENTS_ENABLED (Razorpay's keys are set)."""
    if not settings.PAYMENTS_ENABLED:
        raise ApiError(OrderError.PAYMENTS_UNAVAILABLE)


def _require_room_for_an_order(customer: User) -> None:
    """At most ORDER_MAX_LIVE_PER_CUSTOMER unfinished orders per customer: one account cannot
    tie up every rider nearby. The customer's row is locked first, so two bookings at once
    cannot both take the last place."""
    User.objects.select_for_update().filter(pk=customer.pk).values_list("pk", flat=True).first()
    live = Order.objects.filter(customer=customer).exclude(status__in=TERMINAL_STATUSES)
    if live.count() >= settings.ORDER_MAX_LIVE_PER_CUSTOMER:
        raise ApiError(
            OrderError.TOO_MANY_LIVE_ORDERS, retry_after=settings.ORDER_LIVE_RETRY_AFTER_SECONDS
        )


def order_cancel(*, order_id, actor: Actor, reason: str = "", if_status=None) -> Order:
    """Cancels by the state rules; a paid order's money goes back through a refund (payments'
    hooks on the move: its payments are locked before the order, so a capture arriving at the
    same moment is either refunded here or, arriving later, by mark_paid).

    Staff need the orders.cancel_any_order permission. `if_status`: only from that status
    (order_transition).
    """
    if actor.kind == ActorKind.STAFF and not actor.user.has_perm("orders.cancel_any_order"):
        raise ApiError(CommonError.PERMISSION_DENIED, "You need the cancel-any-order permission.")
    return order_transition(
        order_id=order_id, action=Action.CANCEL, actor=actor, reason=reason, if_status=if_status
    )


def order_rate(*, customer: User, order_id, stars: int, comment: str = "") -> Rating:
    order = order_get_for_customer(customer=customer, order_id=order_id)
    if order.status != OrderStatus.DELIVERED:
        raise ApiError(OrderError.NOT_DELIVERED)
    try:
        with transaction.atomic():
            return Rating.objects.create(order=order, stars=stars, comment=comment)
    except IntegrityError:
        raise ApiError(OrderError.ALREADY_RATED) from None
