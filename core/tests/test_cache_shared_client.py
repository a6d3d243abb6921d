"""Django builds a cache object per thread (per request context under ASGI); the Redis client
behind the project's cache is built once per process (core/cache.py), not once per request or
socket, where each left a redis-py client's reference cycles for the next full collection."""

import gc
import threading

import pytest
from django.core.cache import caches
from redis import Redis

from core.cache import RedisCacheWithMemoryFallback


def cache_in_a_thread_of_its_own() -> RedisCacheWithMemoryFallback:
    found = []

    def use_the_cache():
        cache = caches["default"]
        cache.get("shared-client-probe")  # builds the Redis client where it is per thread
        found.append(cache)

    thread = threading.Thread(target=use_the_cache)
    thread.start()
    thread.join()
    return found[0]


@pytest.mark.skipif(
    not isinstance(caches["default"], RedisCacheWithMemoryFallback), reason="no Redis cache"
)
def test_the_caches_of_many_threads_share_one_redis_client_and_leave_no_garbage():
    # given the cache as two threads see it: two objects, as Django makes them
    first, second = cache_in_a_thread_of_its_own(), cache_in_a_thread_of_its_own()
    assert first is not second
    # then one Redis client serves both
    assert first.redis is second.redis
    assert first.redis.client.get_client(write=True) is second.redis.client.get_client()

    # and a hundred threads using the cache leave no Redis client in the garbage
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(100):
            cache_in_a_thread_of_its_own()
        gc.collect()
        left = sum(isinstance(thing, Redis) for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == 0
