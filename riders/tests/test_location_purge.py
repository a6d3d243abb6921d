"""The trail is kept RIDER_LOCATION_RETENTION_HOURS; the hourly housekeeping task purges it."""

from datetime import timedelta

import pytest
from django.contrib.gis.geos import Point
from django.utils import timezone

from core.tasks import purge_expired_records
from riders.models import RiderLocation
from riders.services import rider_location_purge
from riders.tests.factories import RiderFactory

pytestmark = pytest.mark.django_db


def trail(rider, *hours_ago: float) -> list[RiderLocation]:
    now = timezone.now()
    return RiderLocation.objects.bulk_create(
        RiderLocation(
            rider=rider,
            point=Point(77.6, 12.97, srid=4326),
            recorded_at=now - timedelta(hours=hours),
        )
        for hours in hours_ago
    )


def test_the_hourly_task_deletes_points_past_the_retention_and_keeps_the_rest(settings):
    # given points from 1 h, 47 h, 49 h and 100 h ago, with 48 h kept
    settings.RIDER_LOCATION_RETENTION_HOURS = 48
    rider = RiderFactory()
    recent, within, _past, _ancient = trail(rider, 1, 47, 49, 100)

    # when the periodic housekeeping runs
    purge_expired_records.apply()

    # then
    assert set(RiderLocation.objects.values_list("pk", flat=True)) == {recent.pk, within.pk}


def test_the_retention_comes_from_settings(settings):
    rider = RiderFactory()
    trail(rider, 1, 5)
    settings.RIDER_LOCATION_RETENTION_HOURS = 2

    assert rider_location_purge() == 1
    assert RiderLocation.objects.count() == 1


def test_the_purge_works_in_bounded_batches():
    # given 7 old points
    rider = RiderFactory()
    trail(rider, *[50 + n for n in range(7)], 1)

    # when one run may delete at most 2 batches of 3
    first = rider_location_purge(older_than=timedelta(hours=48), batch_size=3, max_batches=2)

    # then it stops there, and the next run finishes the job
    assert first == 6
    assert RiderLocation.objects.count() == 2
    assert rider_location_purge(older_than=timedelta(hours=48), batch_size=3) == 1
    assert RiderLocation.objects.count() == 1
