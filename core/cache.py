"""The default cache: Redis through django-redis, with an in-process stand-in during outages.

When a Redis call fails (connection refused, reset or timed out), the cache serves from a
local in-memory cache for `FALLBACK_SECONDS`, then tries Redis again. A dead Redis therefore
costs one failed call per process per window instead of a timeout on every request, and the
cache recovers by itself when Redis comes back. Values written during an outage stay local to
the process and are not copied to Redis afterwards.

Django builds a cache object per thread, and under ASGI per request context: every request and
every socket would build its own django-redis client (a redis-py client with a few dozen
objects in reference cycles). The django-redis cache behind it is shared by the whole process
instead (redis-py's client and pool are thread safe): a sockets worker's RSS grew 56 KiB per
socket opened and closed until a full garbage collection, 1,000 such graphs in its garbage after
1,000 sockets (bench/sockets_memory.py).
"""

import json
import logging
import threading
import time
from typing import Any

from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django_redis.cache import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

_REDIS_DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)
# One django-redis cache per configuration, for the process (see the module's docstring).
_shared_redis: dict[str, RedisCache] = {}
_shared_redis_lock = threading.Lock()


def shared_redis_cache(server: str, params: dict[str, Any]) -> RedisCache:
    key = json.dumps([server, params], sort_keys=True, default=repr)
    with _shared_redis_lock:
        if key not in _shared_redis:
            _shared_redis[key] = RedisCache(server, params)
        return _shared_redis[key]


class RedisCacheWithMemoryFallback(BaseCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        options = dict(params.get("OPTIONS", {}))
        self.fallback_seconds = float(options.pop("FALLBACK_SECONDS", 10.0))
        start_in_fallback = bool(options.pop("START_IN_FALLBACK", False))
        options["IGNORE_EXCEPTIONS"] = False
        self.redis = shared_redis_cache(server, {**params, "OPTIONS": options})
        self.memory = LocMemCache("redis-fallback", params)
        self._lock = threading.Lock()
        self._redis_down_until = (
            time.monotonic() + self.fallback_seconds if start_in_fallback else 0
        )

    @property
    def using_fallback(self) -> bool:
        return time.monotonic() < self._redis_down_until

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if not self.using_fallback:
            try:
                return getattr(self.redis, method)(*args, **kwargs)
            except _REDIS_DOWN_ERRORS as error:
                self._mark_down(error)
        return getattr(self.memory, method)(*args, **kwargs)

    def _mark_down(self, error: Exception) -> None:
        with self._lock:
            was_up = not self.using_fallback
            self._redis_down_until = time.monotonic() + self.fallback_seconds
        if was_up:
            logger.warning(
                "Redis cache unavailable (%s); using the in-memory cache for %.0f s",
                type(error).__name__,
                self.fallback_seconds,
            )

    def redis_call(self, call: Any) -> Any:
        """`call(client)` with redis-py's client, for what Django's cache API lacks (sorted
        sets); None while Redis is down, as the in-memory stand-in has no such thing."""
        if self.using_fallback:
            return None
        try:
            return call(self.redis.client.get_client(write=True))
        except _REDIS_DOWN_ERRORS as error:
            self._mark_down(error)
            return None

    def add(self, *args: Any, **kwargs: Any) -> bool:
        return self._call("add", *args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get", *args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set", *args, **kwargs)

    def touch(self, *args: Any, **kwargs: Any) -> bool:
        return self._call("touch", *args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        return self._call("delete", *args, **kwargs)

    def get_many(self, *args: Any, **kwargs: Any) -> dict:
        return self._call("get_many", *args, **kwargs)

    def set_many(self, *args: Any, **kwargs: Any) -> list:
        return self._call("set_many", *args, **kwargs) or []

    def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("delete_many", *args, **kwargs)

    def has_key(self, *args: Any, **kwargs: Any) -> bool:
        return self._call("has_key", *args, **kwargs)

    def incr(self, *args: Any, **kwargs: Any) -> int:
        return self._call("incr", *args, **kwargs)

    def decr(self, *args: Any, **kwargs: Any) -> int:
        return self._call("decr", *args, **kwargs)

    def clear(self) -> Any:
        self.memory.clear()
        return self._call("clear")

    def close(self, **kwargs: Any) -> None:
        self.redis.close(**kwargs)
