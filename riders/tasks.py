"""Periodic rider housekeeping."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from riders.models import Rider

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def set_idle_riders_offline() -> int:
    """Sets offline every online rider silent for RIDER_IDLE_OFFLINE_MINUTES; returns how many.

    Silent means no location for that long (none at all since going online: updated_at), and
    not having come online in that time either (status_changed_at). A rider on a delivery is
    never touched. The WHERE clause is re-checked by PostgreSQL on each row it locks, so a
    rider whose ping lands while this runs stays online. Their pending offers are withdrawn,
    so the orders move on to other riders.
    """
    from delivery.services import offers_withdraw_from_unavailable_riders

    now = timezone.now()
    cutoff = now - timedelta(minutes=settings.RIDER_IDLE_OFFLINE_MINUTES)
    no_recent_fix = Q(last_location_at__lt=cutoff) | Q(
        last_location_at__isnull=True, updated_at__lt=cutoff
    )
    # A rider back after a day away has a day-old fix; the minutes since going online count.
    not_just_online = Q(status_changed_at__lt=cutoff) | Q(status_changed_at__isnull=True)
    count = Rider.objects.filter(no_recent_fix, not_just_online, status=Rider.Status.ONLINE).update(
        status=Rider.Status.OFFLINE, status_changed_at=now, updated_at=now
    )
    if count:
        logger.info("set %d idle rider(s) offline (silent since before %s)", count, cutoff)
        offers_withdraw_from_unavailable_riders()
    return count
