"""queue_task with a broker that refuses connections: a warning, never an exception."""

import logging

import pytest
from celery import Celery

from core.queueing import queue_task
from devstack.ports import LOCALHOST, free_port


@pytest.fixture
def dead_broker_app():
    """A Celery app whose broker is a port nobody listens on, retrying publishes briefly."""
    app = Celery("dead-broker", broker=f"redis://{LOCALHOST}:{free_port()}/0", set_as_current=False)
    app.conf.broker_connection_timeout = 1
    app.conf.task_publish_retry_policy = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.1,
    }
    yield app
    app.close()


def test_a_task_for_a_dead_broker_is_reported_not_raised(dead_broker_app, caplog):
    @dead_broker_app.task(name="probe.noop")
    def noop(value):
        return value

    with caplog.at_level(logging.WARNING, logger="core.queueing"):
        queued = queue_task(noop, "order-1", recovered_by="the sweep")

    assert queued is False
    assert "probe.noop['order-1'] not queued, broker unavailable" in caplog.text
    assert "the sweep will pick it up" in caplog.text
