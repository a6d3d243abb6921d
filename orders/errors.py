"""The orders app's refusals: each code a client may read, its status and message."""

import enum

from rest_framework import status

from core.exceptions import ErrorCode


@enum.unique
class OrderError(ErrorCode):
    IDEMPOTENCY_KEY_REUSED = (
        "idempotency_key_reused",
        status.HTTP_422_UNPROCESSABLE_ENTITY,
        "This Idempotency-Key was already used for a different request.",
    )
    TOO_MANY_LIVE_ORDERS = (
        "too_many_live_orders",
        status.HTTP_429_TOO_MANY_REQUESTS,
        "You have as many orders under way as one account may; book again once one ends.",
    )
    QUOTE_ALREADY_USED = (
        "quote_already_used",
        status.HTTP_409_CONFLICT,
        "This quote has already been booked; ask for a new one.",
    )
    NOT_DELIVERED = (
        "order_not_delivered",
        status.HTTP_409_CONFLICT,
        "Only a delivered order can be rated.",
    )
    ALREADY_RATED = "already_rated", status.HTTP_409_CONFLICT, "This order has already been rated."
    NOT_CUSTOMER = (
        "not_customer",
        status.HTTP_403_FORBIDDEN,
        "Sign in as a customer to book deliveries.",
    )
    PAYMENTS_UNAVAILABLE = (
        "payments_unavailable",
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "Online payments are not available; choose cash on delivery.",
    )
    NOT_FOUND = "not_found", status.HTTP_404_NOT_FOUND, "No such order."
    INVALID_TRANSITION = (
        "invalid_transition",
        status.HTTP_409_CONFLICT,
        "The order cannot make that change in its current state.",
    )
    RIDER_IS_CUSTOMER = (
        "rider_is_customer",
        status.HTTP_409_CONFLICT,
        "A rider cannot carry their own order.",
    )
    NOT_PARTY = (
        "permission_denied",
        status.HTTP_403_FORBIDDEN,
        "You are not a party to this order.",
    )
    OUTSIDE_SERVICE_AREA = (
        "outside_service_area",
        status.HTTP_400_BAD_REQUEST,
        "We do not deliver there yet.",
    )
    # A trip to nowhere would still pay its rider: the minimum fare is below the rider's pay.
    TRIP_TOO_SHORT = (
        "trip_too_short",
        status.HTTP_400_BAD_REQUEST,
        "Pickup and drop are too close together for a delivery.",
    )
    QUOTE_EXPIRED = (
        "quote_expired",
        status.HTTP_400_BAD_REQUEST,
        "This quote has expired; ask for a new one.",
    )
