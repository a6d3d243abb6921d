"""core.handlers: a sync view and its middleware run in one thread hop, and answer as Django's
own ASGI handler does.

Django's ASGIHandler, given the same MIDDLEWARE, is the reference: the tests send the same
requests to both. Transactional: the views run in the request's thread with their own
connection.
"""

import asyncio
import threading

import pytest
from asgiref.sync import AsyncToSync
from django.core.handlers.asgi import ASGIHandler

from config.asgi import django_asgi_app
from core.handlers import SyncChainASGIHandler
from core.tests.test_hotpath import (
    _comparable,
    answered_and_reported,
    asgi_client,
    failing_views,
    json_body,
)
from riders.tests.support import LOCATION_URL, ME_URL, fix

pytestmark = pytest.mark.django_db(transaction=True)


def call(app, method="POST", *, path=ME_URL, body=None, headers=None):
    """One request to the ASGI `app`, from a fresh event loop as a server's: not from inside
    async_to_sync, whose thread would take the request's thread-sensitive calls."""

    async def run():
        async with asgi_client(app) as client:
            return await client.request(method, path, content=body, headers=headers)

    return asyncio.run(run())


@pytest.fixture
def loop_returns(monkeypatch):
    """The names of the threads that handed work back to the event loop (async_to_sync)."""
    returns = []
    original = AsyncToSync.__call__

    def noting(self, *args, **kwargs):
        returns.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AsyncToSync, "__call__", noting)
    return returns


def test_the_served_application_uses_the_one_hop_handler():
    assert type(django_asgi_app) is SyncChainASGIHandler


def test_a_sync_view_answers_as_djangos_handler_without_going_back_to_the_loop(
    rider_headers, loop_returns
):
    # when the rider's profile (a sync DRF view) is read through each handler
    ours = _comparable(call(django_asgi_app, "GET", path=ME_URL, headers=rider_headers))
    ours_returned = list(loop_returns)
    loop_returns.clear()
    djangos = _comparable(call(ASGIHandler(), "GET", path=ME_URL, headers=rider_headers))

    # then the same answer; Django's chain handed the view back to the loop, ours did not
    assert ours == djangos
    assert ours[0] == 200
    assert ours_returned == []
    assert loop_returns


def test_an_async_view_is_called_on_the_loop_from_the_chain(rider_headers, loop_returns):
    # The ping's view is async. The hot path serves it in production; this handler still can.
    response = call(
        django_asgi_app, path=LOCATION_URL, body=json_body(fix()), headers=rider_headers
    )

    assert response.status_code == 202
    assert len(loop_returns) == 1


@failing_views
def test_a_failing_sync_view_answers_as_djangos_handler(
    rider_headers, monkeypatch, failure, status, reported
):
    # given the profile view's service failing
    def failing(**kwargs):
        raise failure

    monkeypatch.setattr("riders.permissions.rider_get_or_create", failing)

    # when
    ours, djangos = answered_and_reported(
        lambda: call(django_asgi_app, "GET", path=ME_URL, headers=rider_headers),
        lambda: call(ASGIHandler(), "GET", path=ME_URL, headers=rider_headers),
    )

    # then
    assert ours[0] == djangos[0]
    assert ours[0][0] == status
    assert (ours[1], djangos[1]) == (reported, reported)
