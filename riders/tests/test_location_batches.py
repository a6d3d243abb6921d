"""Pings from async code (the location view, the rider socket) are stored in batches: the
fixes one event loop receives meanwhile go to PostgreSQL in one statement
(rider_location_pings), each answered as if it had been stored alone.

Real PostgreSQL; the batches run in pool threads with their own connections (transactional).
"""

import asyncio
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.db import IntegrityError, OperationalError, connection
from django.utils import timezone
from psycopg.errors import LockNotAvailable

from accounts.tests.factories import UserFactory
from orders.models import Order, OrderStatus
from orders.tests.factories import OrderFactory
from riders import services
from riders.errors import RiderError
from riders.models import Rider, RiderLocation
from riders.services import rider_location_record_async
from riders.tests.factories import RiderFactory, RiderUserFactory, located
from riders.tests.support import MG_ROAD, NORTH_1KM

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def batches(monkeypatch) -> list[list]:
    """The batches sent to PostgreSQL, as lists of user ids in the order they were given."""
    sent = []
    store = services._location_pings

    def noting(batch):
        sent.append([params["user_id"] for params in batch])
        return store(batch)

    monkeypatch.setattr(services._ping_batches, "store_batch", services.database_call(noting))
    return sent


def psycopg_connection() -> psycopg.Connection:
    """A connection of its own to the test database, outside Django."""
    settings = connection.settings_dict
    return psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        host=settings["HOST"],
        port=settings["PORT"],
    )


def at(seconds_ago: float):
    return timezone.now() - timedelta(seconds=seconds_ago)


def ping(user, lat_lng=MG_ROAD, *, seconds_ago: float = 1, **fields):
    return rider_location_record_async(
        user_id=user.pk, lat=lat_lng[0], lng=lat_lng[1], recorded_at=at(seconds_ago), **fields
    )


def together(*pings):
    """Runs the pings concurrently in one event loop; their receipts or errors, in order."""

    async def run():
        return await asyncio.gather(*pings, return_exceptions=True)

    return asyncio.run(run())


def test_pings_arriving_together_are_stored_in_one_batch_each_with_its_own_receipt(batches):
    riders = [located(RiderFactory(), lat=MG_ROAD[0], lng=MG_ROAD[1], seconds_ago=60)]
    riders += [RiderFactory() for _ in range(3)]

    receipts = together(*(ping(rider.user) for rider in riders))

    assert len(batches) == 1 and len(batches[0]) == 4
    assert [receipt.rider_id for receipt in receipts] == [rider.pk for rider in riders]
    assert all(receipt.is_latest and receipt.order_id is None for receipt in receipts)
    for rider in riders:
        rider.refresh_from_db()
        assert rider.last_location is not None
        assert RiderLocation.objects.filter(rider=rider).count() == 1


def test_a_lone_ping_goes_out_at_once_in_a_batch_of_its_own(batches):
    rider = RiderFactory()

    receipt = asyncio.run(ping(rider.user))

    assert receipt.rider_id == rider.pk
    assert len(batches) == 1 and len(batches[0]) == 1


def test_fixes_of_one_rider_in_one_batch_follow_the_rules_of_fixes_sent_one_by_one(batches):
    # given a rider carrying an order
    order = OrderFactory(status=OrderStatus.PICKED_UP)
    rider = located(order.rider, lat=MG_ROAD[0], lng=MG_ROAD[1], seconds_ago=60)
    seq = order.tracking_seq

    # when three fixes arrive together: two new ones, then one older than both
    newer, newest, older = together(
        ping(rider.user, seconds_ago=3),
        ping(rider.user, seconds_ago=2),
        ping(rider.user, seconds_ago=30),
    )

    # then in one batch, each took its turn: the new ones the next seqs, the older none
    assert len(batches) == 1
    assert (newer.is_latest, newer.order_id, newer.seq) == (True, order.pk, seq + 1)
    assert (newest.is_latest, newest.order_id, newest.seq) == (True, order.pk, seq + 2)
    assert (older.is_latest, older.seq) == (False, None)
    assert Order.objects.get(pk=order.pk).tracking_seq == seq + 2
    assert RiderLocation.objects.filter(rider=rider).count() == 3


def test_a_fix_too_far_from_the_one_before_it_in_the_batch_is_refused(batches):
    rider = RiderFactory()

    first, jump = together(ping(rider.user, seconds_ago=2), ping(rider.user, (13.5, 77.6)))

    assert len(batches) == 1
    assert first.is_latest
    assert jump.kind is RiderError.LOCATION_IMPOSSIBLE_SPEED


def test_a_bad_fix_fails_alone_and_the_rest_of_its_batch_is_stored(batches):
    riders = [RiderFactory() for _ in range(3)]

    # accuracy_m < 0 breaks a CHECK constraint: the batch's statement fails as a whole
    results = together(
        ping(riders[0].user), ping(riders[1].user, accuracy_m=-1.0), ping(riders[2].user)
    )

    assert batches == [[rider.user_id for rider in riders]]
    assert isinstance(results[1], IntegrityError)
    assert [results[0].rider_id, results[2].rider_id] == [riders[0].pk, riders[2].pk]
    assert RiderLocation.objects.filter(rider__in=riders).count() == 2


def test_a_new_rider_and_a_customer_in_a_batch_get_what_they_would_get_alone(batches):
    rider, newcomer, customer = RiderFactory(), RiderUserFactory(), UserFactory()

    stored, created, refused = together(ping(rider.user), ping(newcomer), ping(customer))

    assert len(batches[0]) == 3
    assert stored.rider_id == rider.pk
    assert created.rider_id == Rider.objects.get(user=newcomer).pk  # profile made on first fix
    assert refused.kind is RiderError.NOT_A_RIDER


def test_a_batch_is_stored_in_user_order_whatever_order_it_came_in(batches):
    riders = sorted((RiderFactory() for _ in range(4)), key=lambda rider: str(rider.user_id))

    together(*(ping(rider.user) for rider in reversed(riders)))

    assert batches == [[rider.user_id for rider in reversed(riders)]]
    trail = RiderLocation.objects.filter(rider__in=riders).order_by("id")
    assert [point.rider_id for point in trail] == [rider.pk for rider in riders]


def test_when_the_database_cannot_be_reached_every_ping_of_the_batch_gets_that_error(
    monkeypatch,
):
    riders = [RiderFactory() for _ in range(3)]
    cursors = []

    class Unreachable:
        def cursor(self):
            cursors.append(1)
            raise OperationalError("connection to server at 127.0.0.1 failed")

    monkeypatch.setattr(services, "connection", Unreachable())

    results = together(*(ping(rider.user) for rider in riders))

    assert [type(result) for result in results] == [OperationalError] * 3
    assert len(cursors) == 1  # not tried again fix by fix


def test_batches_of_the_same_riders_from_two_workers_all_land_with_gapless_seqs():
    """Two event loops (as two web workers) send batches of the same riders in opposite
    orders, each fix also taking its order's next seq: every fix is stored (a deadlock, were
    the batches not sorted, would be retried fix by fix) and each order's seqs stay
    gapless."""
    orders = [OrderFactory(status=OrderStatus.PICKED_UP) for _ in range(6)]
    for order in orders:
        located(order.rider, lat=MG_ROAD[0], lng=MG_ROAD[1], seconds_ago=120)
    users = [order.rider.user for order in orders]
    start = threading.Barrier(2)
    failures, receipts = [], []

    def worker(users_in_order, offset: float) -> None:
        # The two workers' fixes of a rider lie 1.5 s apart: one fix a second is the limit.
        async def run():
            for round_ in range(10):
                results = await asyncio.gather(
                    *(
                        ping(user, NORTH_1KM, seconds_ago=60 - round_ * 3 - offset)
                        for user in users_in_order
                    ),
                    return_exceptions=True,
                )
                for result in results:
                    (failures if isinstance(result, Exception) else receipts).append(result)

        start.wait(timeout=10)
        asyncio.run(run())

    threads = [
        threading.Thread(target=worker, args=(users, 0)),
        threading.Thread(target=worker, args=(list(reversed(users)), 1.5)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    for order in orders:
        seqs = sorted(r.seq for r in receipts if r.order_id == order.pk and r.seq is not None)
        assert seqs == list(range(order.tracking_seq + 1, order.tracking_seq + 1 + len(seqs)))
        assert Order.objects.get(pk=order.pk).tracking_seq == order.tracking_seq + len(seqs)


def test_a_batch_mixing_the_views_and_the_sockets_user_ids_is_stored(batches):
    # The HTTP view passes the token's user id as text, the socket its user's UUID.
    by_http, by_socket = RiderFactory(), RiderFactory()

    async def run():
        return await asyncio.gather(
            rider_location_record_async(
                user_id=str(by_http.user_id), lat=MG_ROAD[0], lng=MG_ROAD[1], recorded_at=at(1)
            ),
            ping(by_socket.user),
        )

    receipts = asyncio.run(run())

    assert len(batches) == 1 and len(batches[0]) == 2
    assert [receipt.rider_id for receipt in receipts] == [by_http.pk, by_socket.pk]


def test_a_rider_row_locked_elsewhere_holds_its_batch_up_seconds_not_until_the_lock_goes(
    batches,
):
    # given one rider's row locked by another transaction for 6 s
    locked, free = RiderFactory(), RiderFactory()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg_connection() as other, other.transaction():
            other.execute("SELECT 1 FROM riders_rider WHERE id = %s FOR UPDATE", [locked.pk])
            holding.set()
            release.wait(6)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    try:
        # when both riders ping together
        started = time.monotonic()
        stuck, stored = together(ping(locked.user), ping(free.user))
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(10)

    # then the batch gave up on the lock (2 s), and so did the locked fix alone: a 503 for it,
    # its fix to be sent again; the other was stored meanwhile
    assert isinstance(stuck, OperationalError)
    assert isinstance(stuck.__cause__, LockNotAvailable)
    assert stored.rider_id == free.pk
    assert waited < 5.5
    assert len(batches) == 1
    assert not RiderLocation.objects.filter(rider=locked).exists()


def test_a_batch_chosen_as_a_deadlock_victim_is_stored_fix_by_fix(batches, monkeypatch):
    """A batch that PostgreSQL breaks out of a deadlock (40P01) is stored fix by fix: each fix
    lands once and each order's seq moves by one."""
    failed_with = []
    judge = services._worth_trying_alone

    def noting(error):
        failed_with.append(getattr(error.__cause__, "sqlstate", None))
        return judge(error)

    monkeypatch.setattr(services, "_worth_trying_alone", noting)
    # given two riders carrying orders, in the order a batch takes them (by user id)
    orders = sorted(
        (OrderFactory(status=OrderStatus.PICKED_UP) for _ in range(2)),
        key=lambda order: str(order.rider.user_id),
    )
    for order in orders:
        located(order.rider, lat=MG_ROAD[0], lng=MG_ROAD[1], seconds_ago=120)
    first, second = orders
    outcome, holding = [], threading.Event()

    def other_transaction() -> None:
        # holds the second order's row; once the batch waits for it (holding the first
        # rider's row), asks for the first rider's row: a cycle. The batch began waiting
        # first, so its deadlock check runs first and it is the one PostgreSQL breaks.
        with psycopg_connection() as other, other.transaction():
            other.execute("SELECT 1 FROM orders_order WHERE id = %s FOR UPDATE", [second.pk])
            holding.set()
            for _ in range(200):
                waiting = other.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                ).fetchone()[0]
                if waiting:
                    break
                time.sleep(0.02)
            else:
                outcome.append("the batch never waited")
                return
            other.execute("SELECT 1 FROM riders_rider WHERE id = %s FOR UPDATE", [first.rider_id])
            outcome.append("locked")

    thread = threading.Thread(target=other_transaction)
    thread.start()
    assert holding.wait(10)
    try:
        # when both riders ping together
        receipts = together(ping(first.rider.user, NORTH_1KM), ping(second.rider.user, NORTH_1KM))
    finally:
        thread.join(15)

    # then the batch's statement was the deadlock's victim and the other transaction got its
    # lock; both fixes were stored after all, each taking its order's next seq once
    assert failed_with == ["40P01"]
    assert outcome == ["locked"]
    assert len(batches) == 1
    assert [type(receipt).__name__ for receipt in receipts] == ["LocationReceipt"] * 2
    for order, receipt in zip(orders, receipts, strict=True):
        assert receipt.order_id == order.pk and receipt.seq == order.tracking_seq + 1
        assert Order.objects.get(pk=order.pk).tracking_seq == order.tracking_seq + 1
        assert RiderLocation.objects.filter(rider=order.rider).count() == 1
