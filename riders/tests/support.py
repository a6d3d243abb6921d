"""Helpers for the rider tests: the rider URLs and location-ping bodies."""

from datetime import datetime, timedelta

from django.utils import timezone

from accounts.tests.support import bearer
from riders.tests.factories import access_token

ME_URL = "/api/v1/riders/me/"
ONLINE_URL = "/api/v1/riders/me/online/"
OFFLINE_URL = "/api/v1/riders/me/offline/"
LOCATION_URL = "/api/v1/riders/me/location/"

# MG Road, Bengaluru, and a spot about 1.1 km north of it.
MG_ROAD = (12.9756, 77.6050)
NORTH_1KM = (12.9856, 77.6050)


def as_user(client, user):
    """The API client, signed in as `user` with a bearer access token."""
    client.credentials(**bearer(access_token(user)))
    return client


def fix(
    lat_lng: tuple[float, float] = MG_ROAD, *, at: datetime | None = None, seconds_ago: float = 0
) -> dict:
    """A location ping body, recorded `seconds_ago` (or `at`), in ISO 8601 with an offset."""
    recorded_at = at or timezone.now() - timedelta(seconds=seconds_ago)
    return {
        "lat": lat_lng[0],
        "lng": lat_lng[1],
        "accuracy_m": 8.5,
        "heading": 90,
        "speed_mps": 6.2,
        "recorded_at": recorded_at.isoformat(),
    }


_last_spaced: datetime | None = None
LATEST_AHEAD = timedelta(seconds=20)  # within the server's 30 s allowance for a phone's clock


def spaced_fix(lat_lng: tuple[float, float] = MG_ROAD) -> dict:
    """A fix recorded 1.5 s after the previous spaced_fix (a rider's fixes must lie a second
    apart), and no earlier than 100 s ago. Only past 80 quick calls does it start again at
    100 s ago, as fixes may not be recorded in the future."""
    global _last_spaced
    now = timezone.now()
    at = now - timedelta(seconds=100)
    if _last_spaced is not None and _last_spaced + timedelta(seconds=1.5) < now + LATEST_AHEAD:
        at = max(at, _last_spaced + timedelta(seconds=1.5))
    _last_spaced = at
    return fix(lat_lng, at=at)
