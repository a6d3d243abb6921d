"""What the ops console's snapshot and order panel show of each row: plain JSON, read by
ops/frontend (console.js). Queries live in ops/selectors.py; these only shape what they load.
"""

from dataclasses import asdict
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from delivery.models import Offer
from orders.models import Order, OrderEvent
from orders.selectors import place
from payments.models import Payment
from riders.models import Rider


def iso(moment: datetime | None) -> str | None:
    """As the API and the sockets render times: ISO 8601 in the service's time zone."""
    return timezone.localtime(moment).isoformat() if moment is not None else None


def rider_is_stale(last_seen: datetime | None, *, now: datetime) -> bool:
    """No position fresh enough for dispatch (RIDER_LOCATION_MAX_AGE_SECONDS)."""
    limit = timedelta(seconds=settings.RIDER_LOCATION_MAX_AGE_SECONDS)
    return last_seen is None or last_seen < now - limit


def order_summary(order: Order) -> dict:
    """What the map, the queue and the panel show of an order (annotated by orders_active)."""
    quote = order.quote
    rider = order.rider
    return {
        "id": str(order.pk),
        "status": order.status,
        "status_label": order.get_status_display(),
        "seq": order.tracking_seq,
        "pickup": place(quote.pickup_location, quote.pickup_address),
        "drop": place(quote.drop_location, quote.drop_address),
        "rider_id": str(rider.pk) if rider else None,
        "rider_name": (rider.user.name or str(rider.vehicle_number)) if rider else None,
        "created_at": iso(order.created_at),
        "searching_since": iso(getattr(order, "searching_since", None)),
        "payment_method": order.payment_method,
        "payment_status": order.payment_status,
        "amount_paise": order.amount_paise,
    }


def rider_summary(rider: Rider, *, now: datetime) -> dict:
    point = rider.last_location
    return {
        "id": str(rider.pk),
        "name": rider.user.name or rider.vehicle_number or "Rider",
        "vehicle": rider.get_vehicle_type_display(),
        "status": rider.status,
        "lat": point.y if point is not None else None,
        "lng": point.x if point is not None else None,
        "at": iso(rider.last_location_at),
        "stale": rider_is_stale(rider.last_location_at, now=now),
    }


def alert_json(alert) -> dict:
    """An ops.selectors.Alert."""
    return {**asdict(alert), "since": iso(alert.since)}


def event_json(event: OrderEvent) -> dict:
    return {
        "at": iso(event.created_at),
        "action": event.action,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "actor_kind": event.actor_kind,
        "actor_name": (event.actor.name or event.actor_kind) if event.actor else "system",
        "reason": event.reason,
    }


def offer_json(offer: Offer) -> dict:
    return {
        "id": str(offer.pk),
        "round": offer.round_number,
        "rider_id": str(offer.rider_id),
        "rider_name": offer.rider.user.name or offer.rider.vehicle_number,
        "distance_m": offer.distance_m,
        "status": offer.status,
        "withdrawn_reason": offer.withdrawn_reason,
        "offered_at": iso(offer.created_at),
        "responded_at": iso(offer.responded_at),
    }


def payment_json(payment: Payment, *, with_refunds: bool) -> dict:
    """A payment, and its refunds for a user allowed to see them (null otherwise)."""
    return {
        "id": str(payment.pk),
        "razorpay_order_id": payment.razorpay_order_id,
        "razorpay_payment_id": payment.razorpay_payment_id,
        "amount_paise": payment.amount_paise,
        "status": payment.status,
        "captured_at": iso(payment.captured_at),
        "captured_by": payment.captured_by,
        "last_error": payment.last_error,
        "refunds": [
            {
                "status": refund.status,
                "amount_paise": refund.amount_paise,
                "attempts": refund.attempts,
                "last_error": refund.last_error,
                "at": iso(refund.updated_at),
            }
            for refund in payment.refunds.all()
        ]
        if with_refunds
        else None,
    }
