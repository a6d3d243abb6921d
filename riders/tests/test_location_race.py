"""Racing fixes of one rider on a delivery, and the delivery ending among them.

Each fix that becomes the rider's latest takes the order's next tracking seq; the database
function locks the Order row before the Rider row (the project's lock order), and hands a seq
back when a racing newer fix wins. Whatever the interleaving: no deadlock, no seq given twice,
no gap in the order's sequence. Real threads, each with its own connection.
"""

import random
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from delivery.services.steps import delivery_complete
from orders.models import OrderStatus
from orders.tests.factories import OrderFactory
from riders.models import RiderLocation
from riders.services import rider_location_record
from riders.tests.factories import located
from riders.tests.support import MG_ROAD

FIXES = 24


@pytest.mark.django_db(transaction=True)
def test_racing_fixes_and_the_delivery_share_one_gapless_sequence():
    # given a rider at the drop of the order they carry
    order = OrderFactory(status=OrderStatus.AT_DROPOFF)
    rider = located(order.rider, lat=MG_ROAD[0], lng=MG_ROAD[1], seconds_ago=60)
    first_seq = order.tracking_seq
    now = timezone.now()
    # fixes from the last 24 s, sent in a shuffled order: some arrive after a newer one
    moments = [now - timedelta(seconds=FIXES - n) for n in range(FIXES)]
    random.Random(7).shuffle(moments)

    start = threading.Barrier(FIXES)
    some_stored = threading.Event()
    receipts, failures = [], []
    delivered = {}

    def ping(moment) -> None:
        try:
            start.wait(timeout=10)
            receipts.append(
                rider_location_record(
                    user_id=rider.user_id, lat=MG_ROAD[0], lng=MG_ROAD[1], recorded_at=moment
                )
            )
            if len(receipts) >= FIXES // 4:
                some_stored.set()
        except Exception as error:  # a refusal (every fix is at one spot), a deadlock, any error
            failures.append(error)
        finally:
            connection.close()

    def deliver() -> None:
        try:
            some_stored.wait(timeout=10)  # so that some fixes come before it, and some race it
            delivered["order"] = delivery_complete(
                order_id=order.pk, rider=rider, delivery_code="4321"
            )
        except Exception as error:
            failures.append(error)
        finally:
            connection.close()

    # when all the fixes and the delivery race
    threads = [threading.Thread(target=ping, args=(moment,)) for moment in moments]
    threads.append(threading.Thread(target=deliver))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then every call finished cleanly, and every fix is in the trail once
    assert failures == []
    assert len(receipts) == FIXES
    assert RiderLocation.objects.filter(rider=rider).count() == FIXES
    # and the seqs the fixes took, with the delivery's, are the order's sequence with no gap
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    taken = [receipt.seq for receipt in receipts if receipt.seq is not None]
    assert taken, "no fix took a seq before the delivery"
    taken.append(delivered["order"].tracking_seq)
    assert sorted(taken) == list(range(first_seq + 1, order.tracking_seq + 1))
    # a fix took a seq only as the rider's latest, and only while the order was carried
    assert all(receipt.is_latest for receipt in receipts if receipt.seq is not None)
    assert max(taken[:-1]) < delivered["order"].tracking_seq
    # the rider ends at the newest fix
    rider.refresh_from_db()
    assert rider.last_location_at == max(moments)
