"""The riders app's refusals: each code a client may read, its status and message."""

import enum

from rest_framework import status

from core.exceptions import ErrorCode


@enum.unique
class RiderError(ErrorCode):
    NOT_A_RIDER = (
        "not_a_rider",
        status.HTTP_403_FORBIDDEN,
        "Only riders can do this; sign in with the rider app.",
    )
    NOT_APPROVED = (
        "rider_not_approved",
        status.HTTP_403_FORBIDDEN,
        "Your rider profile is waiting for approval; you can go online once it is approved.",
    )
    SUSPENDED = (
        "rider_suspended",
        status.HTTP_403_FORBIDDEN,
        "Your rider account is suspended; contact support.",
    )
    ON_DELIVERY = (
        "rider_on_delivery",
        status.HTTP_409_CONFLICT,
        "Finish the delivery in hand before going offline.",
    )
    UNAVAILABLE = (
        "rider_unavailable",
        status.HTTP_409_CONFLICT,
        "That rider is not online and free to take an order.",
    )
    VEHICLE_LOCKED = (
        "rider_vehicle_locked",
        status.HTTP_409_CONFLICT,
        "Your vehicle was checked when you were approved; ask support to change it.",
    )
    LOCATION_STALE = (
        "location_stale",
        status.HTTP_400_BAD_REQUEST,
        "That location is too old to use.",
    )
    LOCATION_FROM_FUTURE = (
        "location_from_future",
        status.HTTP_400_BAD_REQUEST,
        "That location is dated in the future; check the phone's clock.",
    )
    LOCATION_TOO_FREQUENT = (
        "location_too_frequent",
        status.HTTP_429_TOO_MANY_REQUESTS,
        "Fixes must lie at least a second apart (by recorded_at); this one was not stored.",
    )
    LOCATION_IMPOSSIBLE_SPEED = (
        "location_impossible_speed",
        status.HTTP_400_BAD_REQUEST,
        "That location is too far from the previous one for the time between them.",
    )
    ACCOUNT_INACTIVE = (
        "user_inactive",
        status.HTTP_401_UNAUTHORIZED,
        "This account no longer exists or is disabled; sign in again.",
    )
