"""Periodic housekeeping tasks owned by core."""

import time

from celery import shared_task
from django.core.cache import cache

from core.health import BEAT_HEARTBEAT_KEY


@shared_task(ignore_result=True)
def beat_heartbeat() -> None:
    """Beat queues this every minute; /health/ reports beat stale when it stops arriving."""
    cache.set(BEAT_HEARTBEAT_KEY, time.time(), timeout=None)
