"""The default cache: Redis through django-redis, with an in-process stand-in during outages.

When a Redis call fails (connection refused, reset or timed out), the cache serves from a
local in-memory cache for `FALLBACK_SECONDS`, then tries Redis again. A dead Redis therefore
costs one failed call per process per window instead of a timeout on every request, and the
cache recovers by itself when Redis comes back. Values written during an outage stay local to
the process and are not copied to Redis afterwards.
"""

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


class RedisCacheWithMemoryFallback(BaseCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        options = dict(params.get("OPTIONS", {}))
        self.fallback_seconds = float(options.pop("FALLBACK_SECONDS", 10.0))
        start_in_fallback = bool(options.pop("START_IN_FALLBACK", False))
        options["IGNORE_EXCEPTIONS"] = False
        self.redis = RedisCache(server, {**params, "OPTIONS": options})
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
                with self._lock:
                    was_up = not self.using_fallback
                    self._redis_down_until = time.monotonic() + self.fallback_seconds
                if was_up:
                    logger.warning(
                        "Redis cache unavailable (%s); using the in-memory cache for %.0f s",
                        type(error).__name__,
                        self.fallback_seconds,
                    )
        return getattr(self.memory, method)(*args, **kwargs)

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
