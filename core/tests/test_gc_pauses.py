"""core.gc_pauses: every garbage collection's length reaches the histogram, without the
collection ever waiting on prometheus_client's lock."""

import gc
import threading
import time

import pytest
from prometheus_client import REGISTRY

from core import gc_pauses


def collections_counted(generation: int) -> float:
    value = REGISTRY.get_sample_value(
        "python_gc_pause_seconds_count", {"generation": str(generation)}
    )
    return value or 0.0


@pytest.fixture
def timed():
    gc_pauses.start()
    yield
    gc.callbacks.remove(gc_pauses._on_collection)
    gc_pauses.flush()


@pytest.fixture
def no_automatic_collections():
    """Only the test's own gc.collect() runs meanwhile (an automatic full collection would be
    counted too)."""
    was_enabled = gc.isenabled()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


def test_a_full_collection_is_counted_under_its_generation_with_its_length(
    timed, no_automatic_collections
):
    # given the collections timed so far in the histogram
    gc_pauses.flush()
    before = collections_counted(2)
    total_before = (
        REGISTRY.get_sample_value("python_gc_pause_seconds_sum", {"generation": "2"}) or 0.0
    )

    # when a full collection runs, timed here as well
    started = time.perf_counter()
    gc.collect()
    took = time.perf_counter() - started
    gc_pauses.flush()

    # then it is one more collection of generation 2, no longer than the call that ran it
    assert collections_counted(2) == before + 1
    total = REGISTRY.get_sample_value("python_gc_pause_seconds_sum", {"generation": "2"})
    assert 0 < total - total_before <= took


def test_the_flushing_thread_moves_collections_into_the_histogram_by_itself(timed):
    # given a collection timed but not flushed by the test
    before = collections_counted(2)
    gc.collect()

    # then the process's own thread puts it in the histogram within a few seconds
    deadline = time.monotonic() + 10 * gc_pauses.FLUSH_SECONDS
    while collections_counted(2) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert collections_counted(2) > before


def test_a_collection_while_its_thread_holds_the_histograms_lock_finishes(timed):
    # given a thread inside prometheus_client, holding the lock the histogram's sum takes to
    # observe (as a thread does while a request's latency is observed)
    lock = gc_pauses.PAUSES.labels("2")._sum._lock
    finished = threading.Event()

    def collect_inside_the_lock():
        with lock:
            gc.collect()  # a collection an allocation started here
        finished.set()

    # when a collection runs in that thread
    thread = threading.Thread(target=collect_inside_the_lock, daemon=True)
    thread.start()

    # then it finishes (observing in the callback would wait on this thread's own lock forever)
    assert finished.wait(10), "the collection waited on the histogram's lock"
