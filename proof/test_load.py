"""Two minutes of a busy city against the running stack (proof.load), then the books checked.

200 riders ping every 3 s (half over their socket, half over HTTP), 140 of them start in the
middle of a delivery and all of them take new orders; new customers sign in by OTP, quote and
book about one order every two seconds, and every order's customer watches it over
/ws/delivery/ (200 sockets at the start, 60 of them second phones on the same order, plus one
per new order). The report (error rate, p50/p95/p99 per request, ping to
watcher latency) is printed; run with `-s` to see it:

    .venv/bin/pytest proof/test_load.py -s

Set LOAD_SECONDS to run longer or shorter (CI: the default 120).
"""

import asyncio
import os
import random

import pytest
from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery

from accounts.tests.support import code_from_outbox
from orders.models import CARRYING_STATUSES, Order, OrderEvent
from orders.tests.factories import OrderFactory, QuoteFactory
from proof import load
from proof.stack import start_stack
from riders.models import Earning, Rider
from riders.tests.factories import RiderFactory, access_token, located

pytestmark = pytest.mark.slow

RIDERS = 200
RIDERS_MID_DELIVERY = 140
SECONDS = float(os.environ.get("LOAD_SECONDS", "120"))
SEEDED_CODE = "4321"  # OrderFactory's delivery code


def _point(lat_lng):
    from django.contrib.gis.geos import Point

    return Point(lat_lng[1], lat_lng[0], srid=4326)


def seed(rng: random.Random) -> tuple[list[load.Rider], list[tuple[str, str]], dict]:
    """Riders around the centre, the first RIDERS_MID_DELIVERY carrying an order each."""
    riders, watch, codes = [], [], {}
    for index in range(RIDERS):
        position = load.point_near(load.CENTRE, 2500, rng)
        profile = located(
            RiderFactory(status=Rider.Status.ONLINE), lat=position[0], lng=position[1]
        )
        rider = load.Rider(access_token(profile.user), position, over_http=index % 2 == 0)
        if index < RIDERS_MID_DELIVERY:
            pickup = load.point_near(position, 100, rng)
            # 1.2-2 km: at the riders' speed the trip lasts about the whole run
            drop = load.point_near(pickup, 2000, rng, at_least=1200)
            quote = QuoteFactory(
                pickup_location=_point(pickup),
                drop_location=_point(drop),
                distance_m=round(load.metres_between(pickup, drop)),
            )
            order = OrderFactory(quote=quote, status="rider_assigned", rider=profile)
            Rider.objects.filter(pk=profile.pk).update(status=Rider.Status.ON_DELIVERY)
            rider.job = {
                "order_id": str(order.pk),
                "pickup": pickup,
                "drop": drop,
                "stage": "to_pickup",
            }
            codes[str(order.pk)] = SEEDED_CODE
            watch.append((access_token(order.customer), str(order.pk)))
            if index < RIDERS - RIDERS_MID_DELIVERY:  # and a second phone watching the same
                watch.append((access_token(order.customer), str(order.pk)))
        riders.append(rider)
    return riders, watch, codes


def read_code(phone: str) -> str | None:
    """The login code in the dummy outbox (from a worker thread: its own connection)."""
    try:
        return code_from_outbox(phone)
    except AssertionError:
        return None
    finally:
        connection.close()


@pytest.fixture
def stack(transactional_db, tmp_path):
    """A stack of its own, with the production settings for recycling workers."""
    stack = start_stack(tmp_path / "stack")
    yield stack
    stack.stop()


@pytest.mark.timeout(SECONDS + 300)
@pytest.mark.checklist("P9.11", "P11.17")
def test_a_busy_city_for_two_minutes_keeps_every_order_whole(stack, db_access):
    # given riders on the road, some mid-delivery, each with a watching customer
    riders, watch, codes = seed(random.Random(11))
    seeded = set(codes)

    # when the city runs for two minutes
    run = load.Run(
        base_url=stack.base_url,
        ws_base=stack.ws_url(""),
        origin=stack.origin,
        riders=riders,
        seeded_watch=watch,
        read_code=read_code,
        codes=codes,
        seconds=SECONDS,
    )
    report = asyncio.run(run.go())
    recycled = stack.web.output().count("Maximum request limit of")
    print(f"\n{report.table()}\nweb workers recycled (GUNICORN_MAX_REQUESTS): {recycled}")

    # then nothing failed: no 5xx, no transport error, no socket dropped
    assert report.server_errors == 0, report.failures[:20]
    assert report.failures == [], report.failures[:20]
    assert report.requests > RIDERS * SECONDS / load.PING_SECONDS * 0.8
    assert report.watchers_peak >= RIDERS  # 200 sockets at least, at once
    assert len(report.orders_booked) >= SECONDS * run.bookings_per_second * 0.5
    assert report.orders_delivered, "no delivery finished in the run"
    # a generous bound on a shared 2-core machine: it proves nothing hangs, not speed
    assert max(max(values) for values in report.latencies.values()) < 25, "a request hung"

    # and every order is whole: in an expected state, its last event matching its status
    ours = Order.objects.filter(pk__in=[*seeded, *report.orders_booked])
    assert ours.count() == len(seeded) + len(report.orders_booked)
    expected = {"searching_rider", *CARRYING_STATUSES, "delivered"}
    assert set(ours.values_list("status", flat=True)) <= expected
    last_event = OrderEvent.objects.filter(order=OuterRef("pk")).order_by("-created_at", "-id")
    booked = ours.filter(pk__in=report.orders_booked).annotate(
        last=Subquery(last_event.values("to_status")[:1])
    )
    assert [order.pk for order in booked if order.last != order.status] == []
    # every delivery the riders finished is delivered and paid exactly once
    delivered = ours.filter(status="delivered")
    assert set(map(str, delivered.values_list("pk", flat=True))) == report.orders_delivered
    assert Earning.objects.filter(order__in=delivered).count() == delivered.count()
    # no rider carries two orders, and a rider is on a delivery exactly when carrying one
    carrying = Count("orders", filter=Q(orders__status__in=CARRYING_STATUSES))
    counts = Rider.objects.annotate(carrying=carrying)
    assert not counts.filter(carrying__gt=1).exists()
    assert not counts.filter(status=Rider.Status.ON_DELIVERY, carrying=0).exists()
    assert not counts.filter(carrying=1).exclude(status=Rider.Status.ON_DELIVERY).exists()
    assert stack.server_errors() == []
