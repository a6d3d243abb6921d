"""core.hotpath: the rider's ping answers as the full Django stack does, without its threads.

Both handlers are the ones config.asgi builds, called over ASGI. Transactional: the view runs
its database call in a worker thread with its own connection.
"""

import asyncio
import json
import threading

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import got_request_exception
from django.db import OperationalError
from prometheus_client import REGISTRY

from accounts.tests.factories import UserFactory
from config.asgi import application, django_asgi_app
from core.hotpath import HotPathHandler
from riders.tests.factories import access_token
from riders.tests.support import LOCATION_URL, ME_URL, fix, spaced_fix

pytestmark = pytest.mark.django_db(transaction=True)

HOT_PATH = application.application_mapping["http"]
ORIGIN = "https://ops.example.com"
# Set per response by the server or the handler, not by the middleware.
PER_RESPONSE = {"date", "content-length", "server"}


def asgi_client(app) -> httpx.AsyncClient:
    """An HTTP client whose requests go to the ASGI `app` in this process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


def call(app, method="POST", *, path=LOCATION_URL, body=None, headers=None):
    """One request to the ASGI `app`; its answer."""

    async def run():
        async with asgi_client(app) as client:
            return await client.request(method, path, content=body, headers=headers)

    return async_to_sync(run)()


def json_body(data) -> bytes:
    return json.dumps(data).encode()


@pytest.fixture(autouse=True)
def _cors_origin(settings):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]


def test_the_hot_path_is_the_ping_handler_of_the_served_application():
    assert isinstance(HOT_PATH, HotPathHandler)
    assert HOT_PATH.paths == {LOCATION_URL}
    assert HOT_PATH.fallback is django_asgi_app


def test_the_hot_path_runs_the_middleware_that_does_no_io_and_no_other():
    # A new entry in MIDDLEWARE lands here too: decide whether the ping needs it, and whether
    # it may run in the event loop (no I/O), before changing this list.
    assert settings.HOT_PATH_MIDDLEWARE == [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        "core.middleware.request_id_middleware",
        "core.middleware.DependencyErrorMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "corsheaders.middleware.CorsMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]


def _cases(rider_headers, customer_headers):
    """(name, method, body, headers) of pings good and bad; a fresh fix for each call."""
    no_auth = {"Content-Type": "application/json"}
    return [
        ("accepted", "POST", lambda: json_body(spaced_fix()), rider_headers),
        ("stale", "POST", lambda: json_body(fix(seconds_ago=3600)), rider_headers),
        ("bad field", "POST", lambda: json_body({**spaced_fix(), "lat": 91}), rider_headers),
        ("not json", "POST", lambda: b"{lat:", rider_headers),
        ("not an object", "POST", lambda: b"[1, 2]", rider_headers),
        ("wrong type", "POST", lambda: b"lat=1", {**rider_headers, "Content-Type": "text/plain"}),
        (
            "too large",
            "POST",
            lambda: b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + b"{}",
            rider_headers,
        ),
        ("no token", "POST", lambda: json_body(spaced_fix()), no_auth),
        (
            "bad token",
            "POST",
            lambda: json_body(spaced_fix()),
            {**no_auth, "Authorization": "Bearer not-a-jwt"},
        ),
        ("not a rider", "POST", lambda: json_body(spaced_fix()), customer_headers),
        ("GET", "GET", lambda: None, rider_headers),
        (
            "unknown host",
            "POST",
            lambda: json_body(spaced_fix()),
            {**rider_headers, "Host": "evil.test"},
        ),
        (
            "request id",
            "POST",
            lambda: json_body(spaced_fix()),
            {**rider_headers, "X-Request-ID": "6f1c2f8e-2b1a-4c4e-9d7a-0a7c1e1f2b3c"},
        ),
        ("browser", "POST", lambda: json_body(spaced_fix()), {**rider_headers, "Origin": ORIGIN}),
        (
            "preflight",
            "OPTIONS",
            lambda: None,
            {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        ),
    ]


def _comparable(response: httpx.Response) -> tuple:
    headers = {name: value for name, value in response.headers.items() if name not in PER_RESPONSE}
    if "x-request-id" in headers and "x-request-id" not in response.request.headers:
        headers["x-request-id"] = "(a fresh one)"
    body = response.content
    if response.headers.get("content-type") == "application/json":
        data = response.json()
        for volatile in ("recorded_at", "request_id"):
            data.pop(volatile, None)
            if isinstance(data.get("error"), dict):
                data["error"].pop(volatile, None)
        body = data
    return response.status_code, headers, body


def test_every_answer_of_the_hot_path_matches_the_full_stack(rider_headers):
    customer = UserFactory()
    customer_headers = {**rider_headers, "Authorization": f"Bearer {access_token(customer)}"}
    mismatches = []
    statuses = {}
    for name, method, body, headers in _cases(rider_headers, customer_headers):
        full = _comparable(call(django_asgi_app, method, body=body(), headers=headers))
        hot = _comparable(call(HOT_PATH, method, body=body(), headers=headers))
        statuses[name] = hot[0]
        if hot != full:
            mismatches.append(f"{name}:\n  full stack {full}\n  hot path   {hot}")

    assert not mismatches, "\n".join(mismatches)
    # The cases reach what they are named after (so that the comparison covers them).
    assert statuses == {
        "accepted": 202, "stale": 400, "bad field": 400, "not json": 400, "not an object": 400,
        "wrong type": 415, "too large": 413, "no token": 401, "bad token": 401,
        "not a rider": 403, "GET": 405, "unknown host": 400, "request id": 202, "browser": 202,
        "preflight": 200,
    }  # fmt: skip


def test_a_ping_on_the_hot_path_starts_no_thread_of_its_own(rider_headers, monkeypatch):
    # Django's handler starts a thread for every request (asgiref's ThreadSensitiveContext);
    # the hot path uses only the event loop's pool ("asyncio_N"), whose threads outlive the
    # requests and number at most a few.
    started = []
    original_start = threading.Thread.start

    def noting_start(thread):
        started.append(thread.name)
        return original_start(thread)

    async def threads_started_by(app, pings=20):
        # One event loop for all of them, as a server has.
        async with asgi_client(app) as client:
            for number in range(3 + pings):
                if number == 3:
                    started.clear()
                response = await client.post(
                    LOCATION_URL, content=json_body(spaced_fix()), headers=rider_headers
                )
                assert response.status_code == 202
        return [name for name in started if not name.startswith("asyncio_")]

    monkeypatch.setattr(threading.Thread, "start", noting_start)

    assert len(asyncio.run(threads_started_by(django_asgi_app))) >= 20
    assert asyncio.run(threads_started_by(HOT_PATH)) == []


def test_other_paths_and_websockets_go_to_the_fallback(rider_headers):
    # given a hot path whose fallback notes what it is handed
    handed = []

    async def fallback(scope, receive, send):
        handed.append((scope["type"], scope["path"]))
        await django_asgi_app(scope, receive, send)

    handler = HotPathHandler(paths=[LOCATION_URL], fallback=fallback)

    # when
    profile = call(handler, "GET", path=ME_URL, headers=rider_headers)
    ping = call(handler, body=json_body(spaced_fix()), headers=rider_headers)

    # then
    assert profile.status_code == 200 and profile.json()["status"] == "offline"
    assert ping.status_code == 202
    assert handed == [("http", ME_URL)]


def test_only_async_views_may_take_the_hot_path():
    # A sync view would run in asgiref's one shared thread: refused when the app is built.
    with pytest.raises(ImproperlyConfigured, match=ME_URL):
        HotPathHandler(paths=[ME_URL], fallback=django_asgi_app)


def test_pings_on_the_hot_path_are_counted_in_the_request_metrics(rider_headers):
    def served(name):
        labels = {"status": "202", "view": "riders:location", "method": "POST"}
        return REGISTRY.get_sample_value(name, labels) or 0

    before = served("django_http_responses_total_by_status_view_method_total")
    latencies = REGISTRY.get_sample_value(
        "django_http_requests_latency_seconds_by_view_method_count",
        {"view": "riders:location", "method": "POST"},
    )

    for _ in range(3):
        assert (
            call(HOT_PATH, body=json_body(spaced_fix()), headers=rider_headers).status_code == 202
        )

    assert served("django_http_responses_total_by_status_view_method_total") == before + 3
    assert (
        REGISTRY.get_sample_value(
            "django_http_requests_latency_seconds_by_view_method_count",
            {"view": "riders:location", "method": "POST"},
        )
        == (latencies or 0) + 3
    )


# A view failing, and how the stack answers: DependencyErrorMiddleware's 503, which is not an
# error of ours to report; Django's handler500 with got_request_exception, where Sentry's
# integration listens.
failing_views = pytest.mark.parametrize(
    ("failure", "status", "reported"),
    [(OperationalError("connection to server lost"), 503, 0), (RuntimeError("a bug"), 500, 1)],
)


def answered_and_reported(*requests) -> list[tuple[tuple, int]]:
    """Each request's answer (_comparable), and how many times it sent got_request_exception."""
    signalled = []

    def receiver(sender, **kwargs):
        signalled.append(sender)

    got_request_exception.connect(receiver)
    try:
        results = []
        for request in requests:
            before = len(signalled)
            answer = _comparable(request())
            results.append((answer, len(signalled) - before))
        return results
    finally:
        got_request_exception.disconnect(receiver)


@failing_views
def test_a_failing_ping_answers_as_the_full_stack_does(
    rider_headers, monkeypatch, failure, status, reported
):
    # given the ping's database call failing
    async def failing(**fields):
        raise failure

    monkeypatch.setattr("riders.services.rider_location_record_async", failing)

    # when
    full, hot = answered_and_reported(
        lambda: call(django_asgi_app, body=json_body(spaced_fix()), headers=rider_headers),
        lambda: call(HOT_PATH, body=json_body(spaced_fix()), headers=rider_headers),
    )

    # then
    assert hot[0] == full[0]
    assert hot[0][0] == status
    assert (full[1], hot[1]) == (reported, reported)
