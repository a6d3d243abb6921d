"""Fixtures shared by the orders and payments tests (imported by both conftest files)."""

import threading

import pytest
from celery.signals import task_postrun
from django.core.cache import cache

from config.celery import app as celery_app
from config.celery import close_database_connections


@pytest.fixture(autouse=True)
def celery_eager():
    """Tasks run inline in the caller's thread; nothing reaches the shared broker.

    Not propagating lets an inline task retry as a worker would. The worker's handler that
    closes connections after each task is unhooked: inline it would close the test's own.
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
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def dispatched(monkeypatch) -> list[str]:
    """Order ids handed to dispatch (delivery.tasks.dispatch_order), in order; thread-safe."""
    from delivery import tasks

    calls: list[str] = []
    lock = threading.Lock()
    original = tasks.dispatch_order.delay

    def record(order_id):
        with lock:
            calls.append(str(order_id))
        return original(order_id)

    monkeypatch.setattr(tasks.dispatch_order, "delay", record)
    return calls


@pytest.fixture
def service_area(db):
    from orders.tests.factories import ServiceAreaFactory

    return ServiceAreaFactory()
