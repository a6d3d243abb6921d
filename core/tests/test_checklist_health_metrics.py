"""/health/ reports Celery beat without failing on it; /metrics times requests and counts errors.

In process, through the whole middleware chain (the probes are answered by
core.middleware.ProbeMiddleware). The same behaviour under gunicorn is proven by
test_health_faults.py and test_metrics_gunicorn.py.
"""

import time

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.urls import path
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from core.health import BEAT_HEARTBEAT_KEY

# --- Celery beat in /health/ -------------------------------------------------------------------


@pytest.fixture
def beat_heartbeat():
    """Sets the beat heartbeat (None removes it); the real one is put back afterwards."""
    saved = cache.get(BEAT_HEARTBEAT_KEY)

    def set_to(value):
        if value is None:
            cache.delete(BEAT_HEARTBEAT_KEY)
        else:
            cache.set(BEAT_HEARTBEAT_KEY, value, None)

    yield set_to
    set_to(saved)


@pytest.mark.checklist("P6.9", "P6.11")
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("seconds_ago", "reported"),
    [(5, "ok"), (3600, "stale"), (None, "unknown")],
    ids=["fresh", "stale", "never"],
)
def test_health_reports_the_beat_heartbeat_but_stays_200_without_it(
    api_client, beat_heartbeat, seconds_ago, reported
):
    # given beat's last heartbeat that long ago (or none at all)
    beat_heartbeat(None if seconds_ago is None else time.time() - seconds_ago)

    # when
    response = api_client.get("/health/")

    # then beat is reported, and the database and Redis alone decide the status
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "celery_beat": reported},
    }


# --- Request timing and errors in /metrics -----------------------------------------------------


def crash_view(request):
    raise RuntimeError("checklist: a view that crashes")


urlpatterns = [path("crash/", crash_view)]


def _sample(text: str, sample_name: str, **labels: str) -> float:
    """The sum of the samples named `sample_name` whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name and labels.items() <= sample.labels.items()
    )


def _scrape(client: APIClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.content.decode()


LATENCY = "django_http_requests_latency_seconds_by_view_method"
BY_STATUS = "django_http_responses_total_by_status_total"
EXCEPTIONS = "django_http_exceptions_total_by_type_total"


@pytest.mark.checklist("P6.16", "P6.17", "P6.19")
@pytest.mark.django_db
def test_each_request_is_counted_and_timed_by_view(api_client):
    before = _scrape(api_client)

    for _ in range(3):
        assert api_client.get("/api/config/").status_code == 200

    after = _scrape(api_client)
    labels = {"view": "config", "method": "GET"}
    count = _sample(after, f"{LATENCY}_count", **labels) - _sample(
        before, f"{LATENCY}_count", **labels
    )
    seconds = _sample(after, f"{LATENCY}_sum", **labels) - _sample(
        before, f"{LATENCY}_sum", **labels
    )
    assert count == 3
    assert 0 < seconds < 30
    # and the histogram's buckets place every one of them
    assert _sample(after, f"{LATENCY}_bucket", le="+Inf", **labels) == _sample(
        after, f"{LATENCY}_count", **labels
    )


@pytest.mark.checklist("P6.18")
@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_errors_are_counted_by_status_and_exception_type():
    client = APIClient()
    client.raise_request_exception = False  # a 500, as a real server answers
    before = _scrape(client)

    assert client.get("/crash/").status_code == 500
    assert client.get("/crash/").status_code == 500
    assert client.get("/no-such-page/").status_code == 404

    after = _scrape(client)

    def grew(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert grew(BY_STATUS, status="500") == 2
    assert grew(BY_STATUS, status="404") == 1
    assert grew(EXCEPTIONS, type="RuntimeError") == 2
