"""How many tracking and ops sockets one user may hold open at once, across every web process.

Each open socket is a member of the user's sorted set in Redis (`ws:sockets:<user id>`, scored
by when it last checked in); one past WS_MAX_SOCKETS_PER_USER is refused. A socket checks in
when it opens, renews its lease whenever it re-reads its watcher's rights (about once a
minute, on its next frame), and leaves the set when it closes. A socket whose process died
without closing it drops out after LEASE_SECONDS, so a crash never locks a user out; a socket
quiet for that long drops out too, which can only let a user hold more, never fewer. While
Redis is down sockets are not counted (the stand-in cache has no sorted sets): availability
first.
"""

import time

from django.conf import settings
from django.core.cache import cache

LEASE_SECONDS = 30 * 60


def _key(user_id) -> str:
    return cache.make_key(f"ws:sockets:{user_id}")


def _redis(call):
    """`call(client)` through the cache's Redis (core.cache); None when Redis is down, or when
    no Redis is configured (development without it)."""
    redis_call = getattr(cache, "redis_call", None)
    return None if redis_call is None else redis_call(call)


def socket_check_in(*, user_id, channel_name: str) -> bool:
    """Counts the socket for its user; False (and not counted) past the user's cap."""
    key, now = _key(user_id), time.time()

    def check_in(client) -> int:
        pipe = client.pipeline()
        pipe.zremrangebyscore(key, "-inf", now - LEASE_SECONDS)
        pipe.zadd(key, {channel_name: now})
        pipe.zrank(key, channel_name)
        pipe.expire(key, LEASE_SECONDS)
        return pipe.execute()[2]

    # Its place among the user's sockets by check-in time; two opening at once both count
    # until the later one, past the cap, leaves again.
    place = _redis(check_in)
    if place is None or place < settings.WS_MAX_SOCKETS_PER_USER:
        return True
    socket_check_out(user_id=user_id, channel_name=channel_name)
    return False


def socket_still_open(*, user_id, channel_name: str) -> None:
    """Renews a counted socket's lease (a socket that was not counted stays uncounted)."""
    key = _key(user_id)

    def renew(client) -> None:
        pipe = client.pipeline()
        pipe.zadd(key, {channel_name: time.time()}, xx=True)
        pipe.expire(key, LEASE_SECONDS)
        pipe.execute()

    _redis(renew)


def socket_check_out(*, user_id, channel_name: str) -> None:
    _redis(lambda client: client.zrem(_key(user_id), channel_name))
