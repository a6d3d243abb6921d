"""Exactly one rider wins an order, however many accept it at the same moment.

Real threads, each with its own database connection, through the HTTP API; transaction=True so
that each thread sees the others' commits and the order lock really is contended.
"""

import threading
from collections import Counter

import pytest
from django.db import IntegrityError, connection, transaction

from delivery.models import Offer
from delivery.services.dispatch import dispatch_round
from delivery.tests.support import accept_url, rider_client, rider_near_pickup, searching_order
from orders.models import OrderEvent, OrderStatus
from orders.state import Action
from riders.models import Rider

RIDERS = 20


@pytest.mark.django_db(transaction=True)
def test_twenty_riders_accepting_one_order_at_once_give_exactly_one_winner(settings):
    # given one order offered to twenty riders
    settings.DISPATCH_OFFERS_PER_ROUND = RIDERS
    riders = [rider_near_pickup(100 + 50 * n) for n in range(RIDERS)]
    order = searching_order()
    dispatch_round(order_id=order.pk)
    offers = {offer.rider_id: offer for offer in Offer.objects.filter(order=order)}
    assert len(offers) == RIDERS

    # when all of them accept at the same moment, each from its own thread and connection
    start = threading.Barrier(RIDERS)
    answers: dict = {}

    def accept(rider: Rider) -> None:
        try:
            client = rider_client(rider)
            start.wait(timeout=10)
            response = client.post(accept_url(offers[rider.pk]))
            answers[rider.pk] = (response.status_code, response.json())
        finally:
            connection.close()

    threads = [threading.Thread(target=accept, args=(rider,)) for rider in riders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then exactly one got 200 and every other one 409 offer_not_available
    assert len(answers) == RIDERS
    assert Counter(status for status, _ in answers.values()) == {200: 1, 409: RIDERS - 1}
    (winner_id,) = [rider_id for rider_id, (status, _) in answers.items() if status == 200]
    losers = [body for rider_id, (status, body) in answers.items() if rider_id != winner_id]
    assert {body["error"]["code"] for body in losers} == {"offer_not_available"}
    assert answers[winner_id][1]["status"] == Offer.Status.ACCEPTED

    # and the database agrees: one accepted offer, the rest withdrawn, one assignment
    statuses = Counter(Offer.objects.filter(order=order).values_list("status", flat=True))
    assert statuses == {Offer.Status.ACCEPTED: 1, Offer.Status.WITHDRAWN: RIDERS - 1}
    assert Offer.objects.get(order=order, status=Offer.Status.ACCEPTED).rider_id == winner_id
    order.refresh_from_db()
    assert order.status == OrderStatus.RIDER_ASSIGNED
    assert order.rider_id == winner_id
    assert OrderEvent.objects.filter(order=order, action=Action.ASSIGN).count() == 1
    rider_statuses = dict(Rider.objects.values_list("pk", "status"))
    assert rider_statuses.pop(winner_id) == Rider.Status.ON_DELIVERY
    assert set(rider_statuses.values()) == {Rider.Status.ONLINE}


@pytest.mark.django_db
def test_the_database_refuses_a_second_accepted_offer_for_one_order(settings):
    # the last line of defence, should the locking ever be wrong
    settings.DISPATCH_OFFERS_PER_ROUND = 2
    rider_near_pickup(100)
    rider_near_pickup(200)
    order = searching_order()
    dispatch_round(order_id=order.pk)
    first, second = Offer.objects.filter(order=order)
    Offer.objects.filter(pk=first.pk).update(status=Offer.Status.ACCEPTED)

    with pytest.raises(IntegrityError), transaction.atomic():
        Offer.objects.filter(pk=second.pk).update(status=Offer.Status.ACCEPTED)
