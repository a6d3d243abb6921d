"""Celery beat's scheduler: celery-redbeat's, kept running through a Redis outage or restart.

redbeat keeps the schedule and a lock in Redis, and its tick raises when Redis cannot be
reached (ConnectionError) or when the lock key is gone (LockNotOwnedError: Redis restarted
without persistence, or beat was paused past the lock's timeout). Either would end beat. This
scheduler waits out an unreachable Redis instead, and when the lock is gone it takes the lock
again, waiting as it does at start-up while another beat holds it, then writes the static
schedule back (keeping each entry's last run where Redis still has it) and sends the
heartbeat at once, as at start-up (the schedule's next one may be a minute away, and /health/
lost the last one with Redis), before it ticks again.
"""

import logging

import redis
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis

logger = logging.getLogger("celery.beat")

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class Scheduler(RedBeatScheduler):
    def tick(self, min=min, **kwargs):
        try:
            if self.lock_key and self.lock is None:
                self._take_lock()
            return super().tick(min=min, **kwargs)
        except redis.exceptions.LockError:
            logger.warning("beat: Lost the Redis lock (was Redis restarted?); taking it again")
            self.lock = None
            return 0  # at once: the next tick takes the lock
        except REDIS_DOWN as error:
            logger.warning(
                "beat: Redis unreachable (%s); trying again in %s s", error, self.max_interval
            )
            return self.max_interval

    def _take_lock(self) -> None:
        """Blocks until this beat holds the lock (redbeat's start-up does the same), then
        writes the schedule back in case it went with the lock, and sends the heartbeat."""
        from core.tasks import beat_heartbeat

        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        lock.acquire()
        self.lock = lock
        logger.info("beat: Acquired lock")
        self.setup_schedule()
        beat_heartbeat.delay()
