"""Periodic housekeeping tasks owned by core."""

import logging
import time

from celery import shared_task
from django.core.cache import cache

from core.health import BEAT_HEARTBEAT_KEY

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def beat_heartbeat() -> None:
    """Beat queues this every minute; /health/ reports beat stale when it stops arriving."""
    cache.set(BEAT_HEARTBEAT_KEY, time.time(), timeout=None)


@shared_task(ignore_result=True)
def purge_expired_records() -> None:
    """Hourly clean-up of short-lived rows, each part a bounded, batched DELETE.

    Expired login codes (a day kept: the hourly send cap counts the last hour's) and expired
    refresh-token records, and rider location points past RIDER_LOCATION_RETENTION_HOURS.
    """
    from django.core.management import call_command

    from accounts.services import otp_challenge_purge
    from riders.services import rider_location_purge

    purged = otp_challenge_purge()
    rider_location_purge()  # logs its own count
    # simplejwt's own command: deletes outstanding (and blacklisted) tokens past their expiry.
    call_command("flushexpiredtokens", verbosity=0)
    logger.info("purge_expired_records: %s OTP challenges deleted", purged)
