"""Dispatch rounds: who is offered an order, expiry and the next round, and giving up.

Side effects run after commit, so each test runs the service inside
django_capture_on_commit_callbacks(execute=True); Celery tasks run inline (conftest).
"""

import random
from datetime import timedelta

import pytest
import time_machine
from django.contrib.gis.db.models.functions import Distance
from django.contrib.gis.geos import Point
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from delivery.models import DispatchRound, Offer
from delivery.selectors import riders_nearest_eligible, riders_nearest_eligible_plan
from delivery.services.dispatch import dispatch_round, dispatch_sweep, offers_expire
from delivery.tests.support import rider_near_pickup, searching_order
from orders.models import OrderEvent, OrderStatus, PaymentMethod, PaymentStatus
from orders.tests.factories import PICKUP
from payments.models import Payment, Refund
from riders.models import Rider

pytestmark = pytest.mark.django_db

PICKUP_POINT = Point(PICKUP["lng"], PICKUP["lat"], srid=4326)


@pytest.fixture
def one_offer_per_round(settings):
    settings.DISPATCH_OFFERS_PER_ROUND = 1


def pending_offers(order):
    return list(Offer.objects.filter(order=order, status=Offer.Status.PENDING))


def test_a_round_offers_the_nearest_eligible_riders_with_the_settings_pay_and_life(settings):
    # given three eligible riders and one farther away, k = 3
    settings.DISPATCH_OFFERS_PER_ROUND = 3
    far, near, middle, nearest = (rider_near_pickup(m) for m in (2500, 800, 1200, 300))
    order = searching_order()

    # when
    before = timezone.now()
    dispatch_round(order_id=order.pk)

    # then the three nearest, each with a pending offer that expires after OFFER_TTL_SECONDS
    offers = {offer.rider_id: offer for offer in pending_offers(order)}
    assert set(offers) == {nearest.pk, near.pk, middle.pk}
    assert far.pk not in offers
    offer = offers[nearest.pk]
    assert 280 <= offer.distance_m <= 320
    assert offer.pay_paise == settings.RIDER_FIXED_PAY_PER_ORDER_PAISE
    assert offer.round_number == 1
    ttl = timedelta(seconds=settings.OFFER_TTL_SECONDS)
    assert before + ttl <= offer.expires_at <= timezone.now() + ttl


def test_a_second_dispatch_task_for_the_same_order_does_nothing_while_offers_are_live():
    rider_near_pickup(300)
    rider_near_pickup(400)
    order = searching_order()

    dispatch_round(order_id=order.pk)
    again = dispatch_round(order_id=order.pk)

    assert again is None
    assert Offer.objects.filter(order=order).count() == 2
    assert DispatchRound.objects.filter(order=order).count() == 1


def test_orders_no_longer_searching_are_not_dispatched():
    rider_near_pickup(300)
    order = searching_order(status=OrderStatus.CANCELLED)

    assert dispatch_round(order_id=order.pk) is None
    assert not Offer.objects.exists()


def test_the_radius_widens_each_round_up_to_the_maximum(settings):
    settings.DISPATCH_RADIUS_M = 1000
    settings.DISPATCH_MAX_RADIUS_M = 2500
    rider = rider_near_pickup(2200)
    order = searching_order()

    radii = [dispatch_round(order_id=order.pk).radius_m for _ in range(2)]
    assert radii == [1000, 2000]
    assert not Offer.objects.exists()  # 2.2 km is outside both

    third = dispatch_round(order_id=order.pk)

    assert third.radius_m == 2500
    assert [offer.rider_id for offer in pending_offers(order)] == [rider.pk]


def _bulk_riders(count: int, *, seed: int = 7) -> None:
    """`count` online, approved, fresh riders 700 m to 10 km from the pickup, in one go."""
    rng = random.Random(seed)
    now = timezone.now()
    users = User.objects.bulk_create(
        [
            User(phone=f"+9197{n:08d}", name="", is_customer=False, is_rider=True)
            for n in range(count)
        ]
    )
    riders = []
    for user in users:
        while True:
            dlat, dlng = rng.uniform(-0.09, 0.09), rng.uniform(-0.09, 0.09)
            if dlat * dlat + dlng * dlng > 0.0065**2:  # outside ~700 m
                break
        riders.append(
            Rider(
                user=user,
                approved=True,
                status=Rider.Status.ONLINE,
                last_location=Point(PICKUP["lng"] + dlng, PICKUP["lat"] + dlat, srid=4326),
                last_location_at=now,
            )
        )
    Rider.objects.bulk_create(riders, batch_size=2000)


@pytest.mark.slow
def test_knn_picks_the_nearest_eligible_riders_among_ten_thousand_and_skips_the_ineligible(
    settings,
):
    # given 10,000 eligible riders 700 m and more away
    settings.DISPATCH_OFFERS_PER_ROUND = 3
    _bulk_riders(10_000)
    # and, nearer than all of them, riders who must not be offered anything
    offline = rider_near_pickup(100, status=Rider.Status.OFFLINE)
    unapproved = rider_near_pickup(150, approved=False)
    busy = rider_near_pickup(200, status=Rider.Status.ON_DELIVERY)
    suspended = rider_near_pickup(220, status=Rider.Status.SUSPENDED)
    stale = rider_near_pickup(250, seconds_ago=settings.RIDER_LOCATION_MAX_AGE_SECONDS + 60)
    # and the nearest eligible one, at 600 m
    nearest = rider_near_pickup(600)
    order = searching_order()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Rider._meta.db_table}, {User._meta.db_table}")

    # when
    dispatch_round(order_id=order.pk)

    # then the offers go to the three nearest eligible riders, as an independent
    # ST_Distance-sorted query over the same eligibility rules finds them
    fresh_since = timezone.now() - timedelta(seconds=settings.RIDER_LOCATION_MAX_AGE_SECONDS)
    expected = list(
        Rider.objects.filter(
            approved=True, status=Rider.Status.ONLINE, last_location_at__gte=fresh_since
        )
        .annotate(distance=Distance("last_location", PICKUP_POINT))
        .order_by("distance")
        .values_list("pk", flat=True)[:3]
    )
    offered = [offer.rider_id for offer in Offer.objects.filter(order=order).order_by("distance_m")]
    assert offered == expected
    assert offered[0] == nearest.pk
    ineligible = {offline.pk, unapproved.pk, busy.pk, suspended.pk, stale.pk}
    assert not ineligible & set(offered)

    # and the search uses the GiST index: for a wide radius it walks the index outward from
    # the pickup (a KNN scan, stopping after k rows); for a narrow one PostgreSQL may instead
    # take the few riders inside the radius from the same index and sort them
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef ILIKE %s",
            [Rider._meta.db_table, "%using gist (last_location)%"],
        )
        (gist_index,) = cursor.fetchone()
    probe = searching_order().pk
    wide = riders_nearest_eligible_plan(
        order_id=probe, pickup=PICKUP_POINT, radius_m=12000, limit=3
    )
    assert f"Index Scan using {gist_index}" in wide, wide
    assert "Order By: (last_location <->" in wide, wide
    narrow = riders_nearest_eligible_plan(
        order_id=probe, pickup=PICKUP_POINT, radius_m=3000, limit=3
    )
    assert f"Index Scan using {gist_index}" in narrow or f"Index Scan on {gist_index}" in narrow


def test_an_expired_offer_leads_to_an_offer_to_the_next_rider(
    one_offer_per_round, django_capture_on_commit_callbacks
):
    # given the nearest rider was offered the order and let the offer run out
    first, second = rider_near_pickup(300), rider_near_pickup(600)
    order = searching_order()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_round(order_id=order.pk)
    (offer,) = pending_offers(order)
    assert offer.rider_id == first.pk
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    # when the expiry runs (the countdown task or the sweep)
    with django_capture_on_commit_callbacks(execute=True):
        expired = offers_expire(order_id=order.pk)

    # then that offer is expired and the next rider has one, in round 2
    assert expired == 1
    offer.refresh_from_db()
    assert offer.status == Offer.Status.EXPIRED
    (next_offer,) = pending_offers(order)
    assert next_offer.rider_id == second.pk
    assert next_offer.round_number == 2


def test_an_unexpired_offer_is_left_alone_by_the_expiry(django_capture_on_commit_callbacks):
    rider_near_pickup(300)
    order = searching_order()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_round(order_id=order.pk)

    assert offers_expire() == 0
    assert len(pending_offers(order)) == 1


def test_the_sweep_expires_stale_offers_and_redispatches_waiting_orders(
    one_offer_per_round, django_capture_on_commit_callbacks
):
    # given an order whose offer ran out long ago, and one never dispatched at all
    rider_near_pickup(300)
    other_rider = rider_near_pickup(400)
    stale_order = searching_order()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_round(order_id=stale_order.pk)
    Offer.objects.update(expires_at=timezone.now() - timedelta(seconds=5))
    DispatchRound.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    never_dispatched = searching_order()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_sweep()

    # then the stale offer is expired and both orders are offered again
    assert Offer.objects.filter(status=Offer.Status.EXPIRED).count() == 1
    assert len(pending_offers(stale_order)) + len(pending_offers(never_dispatched)) == 2
    assert {o.rider_id for o in pending_offers(never_dispatched) + pending_offers(stale_order)} == {
        o.rider_id for o in Offer.objects.filter(status=Offer.Status.PENDING)
    }
    assert Offer.objects.filter(rider=other_rider, status=Offer.Status.PENDING).exists()


def _paid_razorpay_order():
    order = searching_order(
        payment_method=PaymentMethod.RAZORPAY, payment_status=PaymentStatus.PAID
    )
    Payment.objects.create(
        order=order,
        razorpay_order_id="order_paid0001",
        razorpay_payment_id="pay_paid0001",
        amount_paise=order.amount_paise,
        currency=order.currency,
        status=Payment.Status.CAPTURED,
        captured_at=timezone.now(),
        captured_by="verify",
    )
    return order


def test_when_every_rider_declines_until_the_window_ends_a_paid_order_is_cancelled_and_refunded(
    settings, razorpay, django_capture_on_commit_callbacks
):
    from delivery.services.dispatch import offer_decline

    # given a paid order offered to the only two riders around
    settings.DISPATCH_OFFERS_PER_ROUND = 2
    riders = [rider_near_pickup(300), rider_near_pickup(500)]
    order = _paid_razorpay_order()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_round(order_id=order.pk)
    offers = pending_offers(order)
    assert {offer.rider_id for offer in offers} == {rider.pk for rider in riders}

    # when both decline, the next round finds nobody; the order keeps searching for now
    with django_capture_on_commit_callbacks(execute=True):
        for offer in offers:
            offer_decline(offer_id=offer.pk, rider=offer.rider)
    order.refresh_from_db()
    assert order.status == OrderStatus.SEARCHING_RIDER
    assert DispatchRound.objects.filter(order=order, offers_made=0).count() == 1
    assert not Refund.objects.exists()

    # and when the sweep retries after the dispatch window has passed
    later = timezone.now() + timedelta(seconds=settings.DISPATCH_WINDOW_SECONDS + 1)
    with (
        time_machine.travel(later, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        dispatch_sweep()

    # then the order is cancelled by the system for want of a rider, and its money refunded
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    event = OrderEvent.objects.get(order=order, to_status=OrderStatus.CANCELLED)
    assert (event.actor_kind, event.reason) == ("system", "no_rider")
    refund = Refund.objects.get(payment__order=order)
    assert refund.amount_paise == order.amount_paise
    assert [call["payment_id"] for call in razorpay.refund_requests] == ["pay_paid0001"]
    assert order.payment_status in {PaymentStatus.REFUND_PENDING, PaymentStatus.REFUNDED}


def test_a_cash_order_nobody_takes_within_the_window_is_cancelled_without_a_refund(
    settings, django_capture_on_commit_callbacks
):
    order = searching_order()
    later = timezone.now() + timedelta(seconds=settings.DISPATCH_WINDOW_SECONDS + 1)

    with (
        time_machine.travel(later, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        dispatch_round(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.events.get(to_status=OrderStatus.CANCELLED).reason == "no_rider"
    assert not Refund.objects.exists()


def test_a_rider_coming_online_is_offered_a_waiting_order_nearby(
    django_capture_on_commit_callbacks,
):
    from riders.services import rider_go_online

    # given an order that found nobody, and an offline rider with a fresh position near it
    order = searching_order()
    dispatch_round(order_id=order.pk)
    rider = rider_near_pickup(400, status=Rider.Status.OFFLINE)

    # when the rider goes online
    with django_capture_on_commit_callbacks(execute=True):
        rider_go_online(rider=rider)

    # then
    assert [offer.rider_id for offer in pending_offers(order)] == [rider.pk]


def show(setting: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {setting}")
        return cursor.fetchone()[0]


def test_the_knn_planner_settings_end_with_the_query_inside_a_callers_transaction():
    # given a caller's transaction (each test here runs in one)
    assert connection.in_atomic_block
    before = (show("enable_bitmapscan"), show("jit"))

    # when dispatch's query runs in it
    riders_nearest_eligible(
        order_id=searching_order().pk, pickup=PICKUP_POINT, radius_m=3000, limit=3
    )

    # then the planner settings it needed do not outlive the query in that transaction
    assert (show("enable_bitmapscan"), show("jit")) == before == ("on", before[1])


@pytest.mark.django_db(transaction=True)
def test_the_knn_planner_settings_end_with_the_query_in_autocommit():
    # given no transaction around the call (a Celery task, autocommit)
    order_id = searching_order().pk
    assert not connection.in_atomic_block
    before = (show("enable_bitmapscan"), show("jit"))

    # when
    riders_nearest_eligible(order_id=order_id, pickup=PICKUP_POINT, radius_m=3000, limit=3)

    # then the query's own transaction took its SET LOCALs with it
    assert (show("enable_bitmapscan"), show("jit")) == before == ("on", before[1])


@pytest.mark.django_db(transaction=True)
def test_the_knn_query_and_its_planner_settings_are_one_round_trip():
    order_id = searching_order().pk
    with CaptureQueriesContext(connection) as queries:
        riders_nearest_eligible(order_id=order_id, pickup=PICKUP_POINT, radius_m=3000, limit=3)

    (statement,) = [query["sql"] for query in queries.captured_queries]
    assert statement.startswith("SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off;")
