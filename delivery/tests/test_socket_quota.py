"""The per-user cap on open tracking and ops sockets, counted in the real Redis."""

import time
import uuid

import pytest
from django.core.cache import cache

from core.cache import RedisCacheWithMemoryFallback
from delivery import socket_quota
from delivery.socket_quota import (
    LEASE_SECONDS,
    socket_check_in,
    socket_check_out,
    socket_still_open,
)
from devstack.ports import LOCALHOST, free_port


@pytest.fixture
def user_id():
    return uuid.uuid4()


def channels(count: int) -> list[str]:
    return [f"specific.{uuid.uuid4().hex}" for _ in range(count)]


@pytest.fixture(autouse=True)
def _cap(settings):
    settings.WS_MAX_SOCKETS_PER_USER = 3


def test_the_socket_past_the_cap_is_refused_until_one_closes(user_id):
    first, second, third, fourth, fifth = channels(5)
    assert all(socket_check_in(user_id=user_id, channel_name=c) for c in (first, second, third))

    assert socket_check_in(user_id=user_id, channel_name=fourth) is False
    socket_still_open(user_id=user_id, channel_name=first)  # an open one renews: still counted
    assert socket_check_in(user_id=user_id, channel_name=fifth) is False

    socket_check_out(user_id=user_id, channel_name=second)
    assert socket_check_in(user_id=user_id, channel_name=fifth) is True
    # another user is counted apart
    assert socket_check_in(user_id=uuid.uuid4(), channel_name=channels(1)[0]) is True


def test_sockets_of_a_process_that_died_drop_out_after_the_lease(user_id):
    dead = channels(3)
    assert all(socket_check_in(user_id=user_id, channel_name=c) for c in dead)
    key = cache.make_key(f"ws:sockets:{user_id}")
    # as if they last checked in a lease ago, and their process died without checking out
    long_ago = time.time() - LEASE_SECONDS - 1
    cache.redis_call(lambda client: client.zadd(key, dict.fromkeys(dead, long_ago)))

    assert socket_check_in(user_id=user_id, channel_name=channels(1)[0]) is True
    assert cache.redis_call(lambda client: client.zcard(key)) == 1


def test_while_redis_is_down_sockets_are_not_counted(user_id, monkeypatch):
    # the project's cache, on a port where no Redis listens
    dead = RedisCacheWithMemoryFallback(
        f"redis://{LOCALHOST}:{free_port()}/0",
        {"OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"}},
    )
    monkeypatch.setattr(socket_quota, "cache", dead)

    opened = [socket_check_in(user_id=user_id, channel_name=c) for c in channels(5)]

    assert opened == [True] * 5
    assert dead.using_fallback  # the first refused connection switched it to the stand-in
