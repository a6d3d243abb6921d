"""Periodic housekeeping tasks owned by core, and the workers' canary."""

import logging
import time
from pathlib import Path

import redis
from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from core.health import BEAT_HEARTBEAT_KEY, redis_client
from core.worker_liveness import CANARY_HASH, forget_silent_workers, record_canary_ran

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def beat_heartbeat() -> None:
    """Beat queues this every minute; /health/ reports beat stale when it stops arriving."""
    cache.set(BEAT_HEARTBEAT_KEY, time.time(), timeout=None)


@shared_task(bind=True, ignore_result=True)
def worker_canary(self, node: str, sent_at: float) -> None:
    """Sent by a worker's watchdog to its own queue (core.worker_liveness): running is the proof.

    Recorded under the node that ran it, in the folder the probe reads and in Redis for
    /metrics; the second is best effort, since the first is what keeps the worker alive.
    """
    ran_by = self.request.hostname or node
    ran_at = time.time()
    record_canary_ran(Path(settings.WORKER_LIVENESS_DIR), ran_by, ran_at)
    try:
        redis_client().hset(CANARY_HASH, ran_by, ran_at)
    except redis.RedisError as error:
        logger.warning("worker_canary: last canary time not sent to Redis (%s)", error)


@shared_task(ignore_result=True)
def purge_expired_records() -> None:
    """Hourly clean-up of short-lived rows, each part a bounded, batched DELETE.

    The apps' own parts (core.purges: expired login codes, rider location points past
    RIDER_LOCATION_RETENTION_HOURS), expired refresh-token records, and the last canary times of
    workers silent for an hour (killed from outside; /metrics).
    """
    from django.core.management import call_command

    from core import purges

    for what, count in purges.run_all().items():
        logger.info("purge_expired_records: %s %s deleted", count, what)
    # simplejwt's own command: deletes outstanding (and blacklisted) tokens past their expiry.
    call_command("flushexpiredtokens", verbosity=0)
    try:
        silent = forget_silent_workers(redis_client(), time.time())
    except redis.RedisError as error:
        logger.warning("purge_expired_records: silent workers not forgotten (%s)", error)
    else:
        if silent:
            logger.info("purge_expired_records: forgot the canaries of %s", ", ".join(silent))
