"""Fixtures shared by every app's tests. App conftests switch the opt-in ones on."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from config.celery import app as celery_app

pytest_plugins = ["checklist.pytest_plugin"]


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def celery_inline():
    """Tasks run inline in the test's process; nothing is pushed to the shared broker.

    Not propagating lets an inline task retry as a worker would (Celery re-raises the first
    Retry when propagating); tests assert outcomes on the rows the task writes.
    """
    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous


@pytest.fixture
def clean_cache():
    """Throttle counters live in the cache (Redis) and would leak from one test to the next."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def lock_watch(request):
    """Every test on the database in a transaction of its own keeps the project's lock order
    (core.locks): a service call that locks rows out of it fails the test that ran it. Yields
    the LockWatch (core/tests/lock_order.py), or None where the test's transactions are real."""
    marker = request.node.get_closest_marker("django_db")
    own_transaction = (marker is not None and not marker.kwargs.get("transaction")) or (
        "db" in request.fixturenames
    )
    if not own_transaction or {"transactional_db", "live_server"} & set(request.fixturenames):
        yield None
        return
    from core.tests.lock_order import watch_lock_order

    request.getfixturevalue("db")
    with watch_lock_order() as watch:
        yield watch
    assert not watch.out_of_order, f"rows locked out of core.locks' order: {watch.out_of_order}"


@pytest.fixture(scope="session")
def image() -> str:
    """The container tests' image, built once per session (`make image`, devstack/containers.py
    names its tag); returns what the build printed."""
    from devstack import containers

    return containers.build_image()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of the test's own on a free port (one it may stop and restart)."""
    from devstack.redis import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def dev_server(own_redis, tmp_path):
    """gunicorn + uvicorn, two workers, in development settings on this test database, queueing
    tasks to own_redis (no eager tasks), with the dummy SMS outbox. It shares this process's
    secret key, so tokens made here are good there."""
    from django.conf import settings
    from django.db import connections

    from devstack.env import base_env, database_url
    from devstack.web import start_server

    env = base_env(
        DJANGO_ENV="development",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=database_url(connections["default"].settings_dict),
        REDIS_URL=own_redis.url,
        CELERY_TASK_ALWAYS_EAGER="false",
        SMS_PROVIDER="dummy",
        LOG_LEVEL="INFO",
    )
    server = start_server(env, tmp_path / "web", workers=2)
    yield server
    server.stop()


@pytest.fixture
def dev_worker(own_redis, tmp_path):
    """A Celery worker process of the development settings, on own_redis."""
    from devstack.celery import start_worker

    worker = start_worker(tmp_path, REDIS_URL=own_redis.url, DJANGO_ENV="development")
    yield worker
    worker.close()


# Whichever test asks for the image first builds it in its setup (93 s with the base cached,
# minutes more on a machine without it), and pytest-timeout counts setup in the test's time.
IMAGE_TEST_TIMEOUT = 900


def pytest_collection_modifyitems(items):
    for item in items:
        if "image" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(IMAGE_TEST_TIMEOUT), append=False)


# Every JSON frame a consumer sends in a test, and every location fix the rider socket
# accepts, is checked against the sockets' AsyncAPI document (core/tests/asyncapi.py): a frame
# the document does not allow fails the test that caused it. Sockets served by another process
# (the live-server tests) are not seen here.
@pytest.fixture(autouse=True, scope="session")
def _socket_frames_follow_the_document():
    from core.tests.asyncapi import consumer_frames_checked

    with consumer_frames_checked():
        yield


def _raise_frames_off_the_document() -> None:
    from core.tests.asyncapi import frames_off_the_document

    found = frames_off_the_document()
    if found:
        raise AssertionError("\n".join(found))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    from core.tests.asyncapi import frames_off_the_document

    frames_off_the_document()  # forgets any left from the test before
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    _raise_frames_off_the_document()  # sent while the test, or its fixtures' setup, ran
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    _raise_frames_off_the_document()
    return result
