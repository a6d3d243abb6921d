"""Dependency checks behind /health/, each bounded so a hung dependency cannot hang the probe."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

OK = "ok"
UNAVAILABLE = "unavailable"
TIMEOUT = "timeout"
IN_MEMORY = "in_memory"
STALE = "stale"
UNKNOWN = "unknown"

BEAT_HEARTBEAT_KEY = "celery-beat:heartbeat"

# Checks run in these threads so the probe can give up on one that hangs (a blackholed host
# can hold a connect for the full connect timeout); a hung check finishes in the background.
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")
# A check still running from an earlier probe is joined, not started again: otherwise a burst
# of probes against a hung Redis fills every thread and the database check starts reporting
# "timeout" while PostgreSQL is fine.
_in_flight: dict[str, Future] = {}
_in_flight_lock = threading.Lock()
_redis_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """This process's Redis client with short timeouts, for checks that must not hang."""
    global _redis_client
    if _redis_client is None:
        timeout = min(settings.HEALTH_CHECK_TIMEOUT_SECONDS, settings.REDIS_SOCKET_TIMEOUT)
        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
        )
    return _redis_client


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # This runs in a pool thread: hand the connection back instead of keeping it there.
        connection.close()
    return OK


def check_cache() -> str:
    if not settings.USE_REDIS:
        return IN_MEMORY  # development without Redis, by design
    redis_client().ping()
    return OK


def check_celery_beat() -> str:
    last_beat = cache.get(BEAT_HEARTBEAT_KEY)
    if last_beat is None:
        return UNKNOWN
    age = time.time() - float(last_beat)
    return OK if age <= settings.BEAT_HEARTBEAT_MAX_AGE_SECONDS else STALE


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "cache": check_cache,
    "celery_beat": check_celery_beat,
}
CRITICAL = {"database", "cache"}


def _start(name: str, check: Callable[[], str]) -> Future:
    with _in_flight_lock:
        future = _in_flight.get(name)
        if future is None or future.done():
            future = _in_flight[name] = _executor.submit(check)
        return future


def run_checks() -> tuple[bool, dict[str, str]]:
    """Runs every check at once; returns (healthy, {check: result})."""
    deadline = time.monotonic() + settings.HEALTH_CHECK_TIMEOUT_SECONDS
    futures = {name: _start(name, check) for name, check in CHECKS.items()}
    results: dict[str, str] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            results[name] = TIMEOUT
        except Exception:
            results[name] = UNAVAILABLE
    healthy = all(results[name] in {OK, IN_MEMORY} for name in CRITICAL)
    return healthy, results
