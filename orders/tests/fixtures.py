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
