"""Sentry starts only when SENTRY_DSN is set, reports a crash with its integrations, no PII."""

import gzip
import json
import subprocess
import sys
import zlib

import pytest

from devstack.env import PROJECT_DIR, base_env

# Runs in a fresh interpreter so sentry_sdk.init happens (or not) exactly as in a deployment.
CRASH_A_REQUEST = """
import json, types, sentry_sdk, django
django.setup()
from django.test import Client
from django.test.utils import override_settings
from django.urls import path

def crash(request):
    raise RuntimeError("sentry-test-crash")

urls = types.ModuleType("crash_urls")
urls.urlpatterns = [path("crash/", crash)]
client = Client(raise_request_exception=False)
with override_settings(ROOT_URLCONF=urls):
    status = client.get(
        "/crash/",
        HTTP_AUTHORIZATION="Bearer secret-jwt-value",
        HTTP_COOKIE="sessionid=secret-session-value",
        REMOTE_ADDR="203.0.113.9",
    ).status_code
sentry_sdk.flush(timeout=10)
sdk = sentry_sdk.get_client()
print(json.dumps({
    "status": status,
    "active": sdk.is_active(),
    "integrations": sorted(sdk.integrations),
    "send_default_pii": sdk.options.get("send_default_pii"),
}))
"""


def _run(env: dict, script: str = CRASH_A_REQUEST) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _decoded(request) -> str:
    body = request.get_data()
    encoding = request.headers.get("Content-Encoding", "")
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "deflate":
        body = zlib.decompress(body)
    elif encoding == "br":
        import brotli

        body = brotli.decompress(body)
    return body.decode("utf-8", "replace")


@pytest.mark.checklist("P6.20", "P7.16", "P10.19")
@pytest.mark.slow
def test_without_a_dsn_sentry_stays_off():
    outcome = _run(base_env(DJANGO_ENV="test"))

    assert outcome["status"] == 500
    assert outcome["active"] is False


@pytest.mark.checklist("P6.20", "P7.16")
@pytest.mark.slow
def test_with_a_dsn_a_crash_reaches_sentry_without_personal_data(httpserver):
    # given a fake Sentry ingesting envelopes on a local port
    httpserver.expect_request("/api/1/envelope/", method="POST").respond_with_json({})
    dsn = f"http://publickey@127.0.0.1:{httpserver.port}/1"

    # when a request crashes in a process configured with that DSN
    outcome = _run(base_env(DJANGO_ENV="test", SENTRY_DSN=dsn))

    # then Sentry was on with the Django, Celery and Redis integrations and no PII
    assert outcome["status"] == 500
    assert outcome["active"] is True
    assert {"django", "celery", "redis"} <= set(outcome["integrations"])
    assert outcome["send_default_pii"] is False
    envelopes = [_decoded(request) for request, _ in httpserver.log]
    crash_reports = [body for body in envelopes if "sentry-test-crash" in body]
    assert crash_reports, f"no crash report among {len(envelopes)} envelopes"
    for leak in ("secret-jwt-value", "secret-session-value", "203.0.113.9"):
        assert all(leak not in body for body in crash_reports), f"{leak} reached Sentry"


# Pings through the hot path (core.hotpath) with Sentry on: each request gets scopes of its
# own, so nothing Sentry attaches to a request stays behind on the process's scopes.
PING_THE_HOT_PATH = """
import asyncio, json, httpx, sentry_sdk, django
django.setup()
from config.asgi import application

transport = httpx.ASGITransport(app=application.application_mapping["http"])

async def ping():
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.post("/api/v1/riders/me/location/", json={})
    return response.status_code

def attached():
    return sum(
        len(scope._event_processors)
        for scope in (sentry_sdk.get_global_scope(), sentry_sdk.get_isolation_scope(),
                      sentry_sdk.get_current_scope())
    )

async def main():
    await ping()
    before = attached()
    statuses = [await ping() for _ in range(200)]
    return {"statuses": sorted(set(statuses)), "attached": attached() - before,
            "active": sentry_sdk.get_client().is_active()}

print(json.dumps(asyncio.run(main())))
"""


@pytest.mark.slow
def test_pings_on_the_hot_path_leave_nothing_on_sentrys_scopes(httpserver):
    httpserver.expect_request("/api/1/envelope/", method="POST").respond_with_json({})
    dsn = f"http://publickey@127.0.0.1:{httpserver.port}/1"

    outcome = _run(base_env(DJANGO_ENV="test", SENTRY_DSN=dsn), PING_THE_HOT_PATH)

    assert outcome == {"statuses": [401], "attached": 0, "active": True}
