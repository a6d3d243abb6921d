"""Fixtures for the accounts tests: inline Celery and a clean cache."""

import pytest
from celery.signals import task_postrun
from django.core.cache import cache

from config.celery import app as celery_app
from config.celery import close_database_connections


@pytest.fixture(autouse=True)
def celery_eager():
    """Tasks run inline, in the test's process; nothing is pushed to the shared broker.

    Not propagating lets an inline task retry as a worker would (Celery re-raises the first
    Retry when propagating); tests assert outcomes on the rows the task writes. The worker
    closes database connections after each task; inline, that would close the test's own
    connection in the middle of its transaction, so that handler is unhooked.
    """
    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = False
    task_postrun.disconnect(close_database_connections)
    yield
    task_postrun.connect(close_database_connections)
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous


@pytest.fixture(autouse=True)
def empty_cache():
    """Throttle counters live in the cache (Redis) and would leak from one test to the next."""
    cache.clear()
    yield
    cache.clear()
