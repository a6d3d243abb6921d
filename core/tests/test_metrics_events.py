"""The metrics the alert rules and the dashboard read (deploy/monitoring/), moved by the events
they count, as /metrics shows them: dispatch giving up and offers expiring (counted in Redis by
whichever process acts), payment mismatches, order moves, pings, accepts, the beat heartbeat and
/health/'s checks."""

import time
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from core.health import BEAT_HEARTBEAT_KEY
from core.metrics import EVENTS_HASH, PAYMENT_MISMATCHES
from delivery.models import Offer
from delivery.services.dispatch import dispatch_round, offers_expire
from delivery.tests.journey import fix
from delivery.tests.support import (
    accept_url,
    north_of_pickup,
    rider_client,
    rider_near_pickup,
    searching_order,
)
from devstack.celery import redis_client
from orders.models import OrderStatus
from riders.models import Rider

pytestmark = pytest.mark.django_db


def scrape(api_client) -> dict[tuple[str, tuple], float]:
    response = api_client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.checklist("P12.3")
def test_an_order_nobody_takes_counts_its_offers_their_expiry_and_the_no_rider_cancel(
    api_client, celery_inline, django_capture_on_commit_callbacks
):
    before = scrape(api_client)
    # given an order offered to two riders who never answer, and then go offline
    order = searching_order()
    riders = [rider_near_pickup(300), rider_near_pickup(500)]
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_round(order_id=order.pk)
    assert Offer.objects.filter(order=order).count() == 2
    Rider.objects.filter(pk__in=[rider.pk for rider in riders]).update(status=Rider.Status.OFFLINE)

    # when the offers expire after the dispatch window (the next round, inline, finds nobody)
    later = timezone.now() + timedelta(seconds=settings.DISPATCH_WINDOW_SECONDS + 1)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        offers_expire(order_id=order.pk)

    # then /metrics counts two offers made, two expired and one order cancelled for no rider
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    after = scrape(api_client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("dispatch_offers_made_total") == 2
    assert grew("dispatch_offers_expired_total") == 2
    assert grew("dispatch_orders_cancelled_no_rider_total") == 1
    assert grew("orders_transitions_total", to_status="cancelled") == 1


def test_an_event_is_counted_only_once_its_transaction_commits(
    api_client, django_capture_on_commit_callbacks
):
    before = value(scrape(api_client), "payments_mismatches_total", source="webhook")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        PAYMENT_MISMATCHES.inc_on_commit(value="webhook")
    assert value(scrape(api_client), "payments_mismatches_total", source="webhook") == before
    for callback in callbacks:
        callback()
    assert value(scrape(api_client), "payments_mismatches_total", source="webhook") == before + 1
    assert redis_client().hget(EVENTS_HASH, "payments_mismatches|webhook") is not None


@pytest.mark.checklist("P12.3")
def test_the_beat_heartbeat_and_the_health_checks_are_gauges(api_client, clean_cache):
    # given no heartbeat yet: no timestamp, and /health/'s celery_beat check fails
    samples = scrape(api_client)
    assert ("celery_beat_heartbeat_timestamp_seconds", ()) not in samples
    assert value(samples, "celery_beat_heartbeat_max_age_seconds") == (
        settings.BEAT_HEARTBEAT_MAX_AGE_SECONDS
    )
    assert value(samples, "delivery_health_check_ok", check="database") == 1
    assert value(samples, "delivery_health_check_ok", check="celery_beat") == 0

    # when a worker runs beat's heartbeat
    now = time.time()
    cache.set(BEAT_HEARTBEAT_KEY, now, timeout=None)

    # then its time is exported and the check passes
    samples = scrape(api_client)
    assert value(samples, "celery_beat_heartbeat_timestamp_seconds") == pytest.approx(now)
    assert value(samples, "delivery_health_check_ok", check="celery_beat") == 1


@pytest.mark.checklist("P12.3")
# The ping's database work runs on its own connection, which sees committed rows only.
@pytest.mark.django_db(transaction=True)
def test_a_ping_and_an_accept_are_timed(api_client, clean_cache, celery_inline):
    before = scrape(api_client)
    # given a rider with an offer
    order = searching_order()
    rider = rider_near_pickup(300)
    dispatch_round(order_id=order.pk)
    offer = Offer.objects.get(order=order)
    client = rider_client(rider)

    # when the rider pings and accepts
    lat, lng = north_of_pickup(290)
    response = client.post("/api/v1/riders/me/location/", fix(lat, lng), format="json")
    assert response.status_code == 202, response.content
    response = client.post(accept_url(offer))
    assert response.status_code == 200, response.content

    # then both are in the histograms
    after = scrape(api_client)
    assert (
        value(after, "rider_location_ping_seconds_count")
        - value(before, "rider_location_ping_seconds_count")
        == 1
    )
    assert (
        value(after, "dispatch_accept_seconds_count")
        - value(before, "dispatch_accept_seconds_count")
        == 1
    )
