"""Periodic rider housekeeping."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from riders.services import riders_set_offline_when_silent_since, riders_unavailable_notify

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def set_idle_riders_offline() -> int:
    """Sets offline every online rider silent for RIDER_IDLE_OFFLINE_MINUTES; returns how many.

    Silent means no location for that long (none at all since going online: updated_at), and
    not having come online in that time either (status_changed_at). A rider on a delivery is
    never touched (riders.services.riders_set_offline_when_silent_since). Their pending offers
    are withdrawn, so the orders move on to other riders, and the ops consoles hear of each.
    """
    cutoff = timezone.now() - timedelta(minutes=settings.RIDER_IDLE_OFFLINE_MINUTES)
    count = riders_set_offline_when_silent_since(cutoff)
    if count:
        logger.info("set %d idle rider(s) offline (silent since before %s)", count, cutoff)
        riders_unavailable_notify()
    return count
