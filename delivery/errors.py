"""The delivery app's refusals: each code a client may read, its status and message."""

import enum

from rest_framework import status

from core.exceptions import ErrorCode


@enum.unique
class DeliveryError(ErrorCode):
    OFFER_NOT_AVAILABLE = (
        "offer_not_available",
        status.HTTP_409_CONFLICT,
        "This offer is no longer available.",
    )
    LOCATION_REQUIRED = (
        "location_required",
        status.HTTP_409_CONFLICT,
        "We have no recent position from you; send your location, then try again.",
    )
    OUTSIDE_GEOFENCE = (
        "outside_geofence",
        status.HTTP_409_CONFLICT,
        "You are too far from the place to mark arrival.",
    )
    CODE_INVALID = (
        "delivery_code_invalid",
        status.HTTP_400_BAD_REQUEST,
        "That is not the customer's delivery code.",
    )
    CODE_LOCKED = (
        "delivery_code_locked",
        status.HTTP_409_CONFLICT,
        "Too many wrong delivery codes; ops must look at this delivery.",
    )
