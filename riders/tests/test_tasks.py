"""set_idle_riders_offline sets silent online riders offline, and nobody else."""

from datetime import timedelta

import pytest
from django.contrib.gis.geos import Point
from django.utils import timezone

from accounts.models import User
from riders.models import Rider
from riders.tasks import set_idle_riders_offline

pytestmark = pytest.mark.django_db


def _rider(number: int, status: str, last_location_minutes_ago: float | None) -> Rider:
    user = User.objects.create_user(f"+91981234{number:04d}", is_rider=True)
    if last_location_minutes_ago is None:
        return Rider.objects.create(user=user, status=status)
    return Rider.objects.create(
        user=user,
        status=status,
        last_location=Point(77.6, 12.97, srid=4326),
        last_location_at=timezone.now() - timedelta(minutes=last_location_minutes_ago),
    )


def test_online_riders_silent_longer_than_the_limit_go_offline(settings):
    # given
    settings.RIDER_IDLE_OFFLINE_MINUTES = 10
    silent = _rider(1, Rider.Status.ONLINE, last_location_minutes_ago=11)
    fresh = _rider(2, Rider.Status.ONLINE, last_location_minutes_ago=9)
    delivering = _rider(3, Rider.Status.ON_DELIVERY, last_location_minutes_ago=60)
    suspended = _rider(4, Rider.Status.SUSPENDED, last_location_minutes_ago=60)
    never_located = _rider(5, Rider.Status.ONLINE, last_location_minutes_ago=None)
    never_located_long_ago = _rider(6, Rider.Status.ONLINE, last_location_minutes_ago=None)
    Rider.objects.filter(pk=never_located_long_ago.pk).update(
        updated_at=timezone.now() - timedelta(minutes=30)
    )

    # when
    count = set_idle_riders_offline()

    # then
    assert count == 2
    statuses = {rider.pk: rider.status for rider in Rider.objects.all()}
    assert statuses == {
        silent.pk: Rider.Status.OFFLINE,
        fresh.pk: Rider.Status.ONLINE,
        delivering.pk: Rider.Status.ON_DELIVERY,
        suspended.pk: Rider.Status.SUSPENDED,
        never_located.pk: Rider.Status.ONLINE,  # just came online, no location yet
        never_located_long_ago.pk: Rider.Status.OFFLINE,
    }


def test_the_limit_comes_from_settings(settings):
    rider = _rider(7, Rider.Status.ONLINE, last_location_minutes_ago=11)
    settings.RIDER_IDLE_OFFLINE_MINUTES = 15

    assert set_idle_riders_offline() == 0
    rider.refresh_from_db()
    assert rider.status == Rider.Status.ONLINE
