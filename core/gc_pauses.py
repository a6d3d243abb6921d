"""How long garbage collection stops a process: `python_gc_pause_seconds{generation}`.

A collection runs in whichever thread allocated last and holds the GIL until it ends, so it
stops a web worker's event loop and every socket on it: with thousands of sockets open, the
longest collections are the tail of the fixes' way to their customers (gunicorn_conf.py sets
the thresholds; docs/performance.md has the figures). gc.callbacks time each collection.

The callback only appends to a deque. It runs inside whatever allocation started the
collection, which can be inside prometheus_client while this very thread holds its lock, so
observing the histogram there could deadlock the process. A daemon thread moves the timings
into the histogram every second; /metrics shows them at most that late.
"""

import gc
import threading
import time
from collections import deque

from prometheus_client import Histogram

PAUSES = Histogram(
    "python_gc_pause_seconds",
    "How long each garbage collection of the process took (it stops the event loop meanwhile).",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
FLUSH_SECONDS = 1.0

# (generation, seconds) of collections not yet in the histogram; bounded, should the flushing
# thread ever stall.
_timed: deque[tuple[int, float]] = deque(maxlen=100_000)
_collection_started = 0.0  # collections never overlap: one holds the GIL until it stops
_flusher: threading.Thread | None = None


def _on_collection(phase: str, info: dict) -> None:
    global _collection_started
    if phase == "start":
        _collection_started = time.perf_counter()
    else:
        _timed.append((info["generation"], time.perf_counter() - _collection_started))


def flush() -> None:
    """Moves the collections timed so far into the histogram (from any thread)."""
    while True:
        try:
            generation, seconds = _timed.popleft()
        except IndexError:  # empty, or emptied by another thread flushing
            return
        PAUSES.labels(str(generation)).observe(seconds)


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        flush()


def start() -> None:
    """Times this process's collections from now on. Call it in each process (after a fork:
    threads do not survive one)."""
    global _flusher
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)
    if _flusher is None or not _flusher.is_alive():
        _flusher = threading.Thread(target=_flush_forever, name="gc-pauses", daemon=True)
        _flusher.start()
