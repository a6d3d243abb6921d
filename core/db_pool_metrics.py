"""How long requests wait for a connection from psycopg's pool (DB_POOL), for /metrics.

psycopg_pool counts its requests, the ones that had to queue, the milliseconds they queued and
the ones refused after DB_POOL_TIMEOUT; `pop_stats()` hands those counts over and zeroes them.
A daemon thread of each web worker moves them into counters every second (as core/gc_pauses.py
does with its timings), so /metrics sums them over the workers. Celery workers keep pools too,
but serve no /metrics: their waits are not counted.
"""

import threading
import time

from prometheus_client import Counter

REQUESTS = Counter(
    "db_pool_requests", "Connections asked of the process's database pool.", ["database"]
)
WAITS = Counter(
    "db_pool_waits",
    "Connection requests that found no free connection in the pool and queued for one.",
    ["database"],
)
WAIT_SECONDS = Counter(
    "db_pool_wait_seconds", "Time connection requests spent queued for the pool.", ["database"]
)
TIMEOUTS = Counter(
    "db_pool_timeouts",
    "Connection requests refused: no connection came free within DB_POOL_TIMEOUT.",
    ["database"],
)
FLUSH_SECONDS = 1.0

_flusher: threading.Thread | None = None


def flush() -> None:
    """Moves the pools' counts so far into the counters (any thread)."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    for alias, pool in list(DatabaseWrapper._connection_pools.items()):
        stats = pool.pop_stats()
        REQUESTS.labels(alias).inc(stats.get("requests_num", 0))
        WAITS.labels(alias).inc(stats.get("requests_queued", 0))
        WAIT_SECONDS.labels(alias).inc(stats.get("requests_wait_ms", 0) / 1000)
        TIMEOUTS.labels(alias).inc(stats.get("requests_errors", 0))


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        flush()


def start() -> None:
    """Starts this process's flushing thread (once); the counters exist from now on."""
    global _flusher
    from django.conf import settings

    for alias in settings.DATABASES:
        for counter in (REQUESTS, WAITS, WAIT_SECONDS, TIMEOUTS):
            counter.labels(alias)
    if _flusher is None:
        _flusher = threading.Thread(target=_flush_forever, name="db-pool-metrics", daemon=True)
        _flusher.start()
