"""The lock order (core.locks) as the services keep it, and the watch that holds every test to
it (core/tests/lock_order.py; the root conftest's `lock_watch` watches each test)."""

from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from core.exceptions import ApiError
from delivery.models import Offer
from delivery.services.dispatch import dispatch_round, offer_accept
from orders.errors import OrderError
from orders.models import Order, OrderStatus
from orders.services import order_cancel
from orders.state import Actor
from orders.tests.factories import OrderFactory, RiderFactory
from riders.models import Rider

pytestmark = pytest.mark.django_db


def pending_offer(order: Order) -> Offer:
    return Offer.objects.create(
        order=order,
        rider=RiderFactory(status=Rider.Status.ONLINE),
        round_number=1,
        distance_m=100,
        pay_paise=5000,
        expires_at=timezone.now() + timedelta(minutes=1),
    )


def kinds_locked(lock_watch) -> list[list[str]]:
    """The kinds of row each service transaction locked, each kind once, in order."""
    return [list(dict.fromkeys(kinds)) for kinds in lock_watch.by_transaction.values()]


def test_a_cancel_locks_the_payments_first_then_the_order_and_what_its_hooks_change(
    celery_inline, lock_watch
):
    # given an order offered to a rider, and one a rider has taken
    searching = OrderFactory(status=OrderStatus.SEARCHING_RIDER)
    pending_offer(searching)
    assigned = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)

    # when the system cancels both
    for order in (searching, assigned):
        order_cancel(order_id=order.pk, actor=Actor.system(), reason="test")

    # then each cancel locked the payments (payments' hook, before the order), the order, then
    # the offers it withdrew (delivery's hook) or the rider it freed (riders' hook)
    assert kinds_locked(lock_watch) == [
        ["payment", "order", "offer"],
        ["payment", "order", "rider"],
    ]


def test_an_accepted_offer_locks_the_order_then_the_offer_then_the_rider(celery_inline, lock_watch):
    order = OrderFactory(status=OrderStatus.SEARCHING_RIDER)
    offer = pending_offer(order)
    offer_accept(offer_id=offer.pk, rider=offer.rider)
    assert kinds_locked(lock_watch) == [["order", "offer", "rider"]]


def test_a_round_that_finds_nobody_in_time_locks_only_the_order_then_cancels_on_its_own(
    celery_inline, lock_watch, settings
):
    # given an order searching for longer than the dispatch window, and nobody nearby
    order = OrderFactory(status=OrderStatus.SEARCHING_RIDER)
    later = timezone.now() + timedelta(seconds=settings.DISPATCH_WINDOW_SECONDS + 1)

    # when its round runs
    with time_machine.travel(later, tick=False):
        dispatch_round(order_id=order.pk)

    # then the round locked the order alone (no payment it does not read), and the cancel that
    # followed took the payments before the order (then its offers), in a transaction of its own
    assert kinds_locked(lock_watch) == [["order"], ["payment", "order", "offer"]]
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_a_cancel_decided_on_an_earlier_read_leaves_an_order_taken_since_alone(celery_inline):
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    with pytest.raises(ApiError) as refused:
        order_cancel(
            order_id=order.pk,
            actor=Actor.system(),
            reason="no_rider",
            if_status=OrderStatus.SEARCHING_RIDER,
        )
    assert refused.value.kind is OrderError.INVALID_TRANSITION
    order.refresh_from_db()
    assert order.status == OrderStatus.RIDER_ASSIGNED


def test_the_watch_catches_a_transaction_that_locks_a_rider_before_its_order(lock_watch):
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    with transaction.atomic():
        Rider.objects.select_for_update().get(pk=order.rider_id)
        Order.objects.select_for_update().get(pk=order.pk)
    assert lock_watch.out_of_order == ["order locked after rider"]
    lock_watch.out_of_order.clear()  # seen: the test passes


def test_two_transactions_in_turn_are_each_held_to_the_order_on_their_own(lock_watch):
    order = OrderFactory(status=OrderStatus.RIDER_ASSIGNED)
    with transaction.atomic():
        Rider.objects.select_for_update().get(pk=order.rider_id)
    with transaction.atomic():
        Order.objects.select_for_update().get(pk=order.pk)
    assert kinds_locked(lock_watch) == [["rider"], ["order"]]
    assert lock_watch.out_of_order == []
