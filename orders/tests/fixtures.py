"""Fixtures shared by the orders and payments tests (imported by both conftest files)."""

import threading

import pytest


@pytest.fixture(autouse=True)
def _inline_tasks_and_clean_cache(celery_inline, clean_cache):
    yield


@pytest.fixture
def dispatched(monkeypatch) -> list[str]:
    """Order ids handed to dispatch (delivery.tasks.dispatch_order), in order; thread-safe."""
    from delivery import tasks

    calls: list[str] = []
    lock = threading.Lock()
    original = tasks.dispatch_order.apply_async

    def record(args=None, kwargs=None, **options):
        with lock:
            calls.append(str(args[0]))
        return original(args, kwargs, **options)

    monkeypatch.setattr(tasks.dispatch_order, "apply_async", record)
    return calls


@pytest.fixture
def service_area(db):
    from orders.tests.factories import ServiceAreaFactory

    return ServiceAreaFactory()
