"""The offer log in the admin: readable and filterable by staff, never editable."""

import pytest
from django.test import Client

from accounts.tests.factories import UserFactory
from delivery.models import Offer
from delivery.services.dispatch import dispatch_round
from delivery.tests.support import rider_near_pickup, searching_order

pytestmark = pytest.mark.django_db


def test_superusers_read_the_offer_log_filtered_by_status_but_cannot_change_it():
    rider_near_pickup(300)
    order = searching_order()
    dispatch_round(order_id=order.pk)
    offer = Offer.objects.get()
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    pending = client.get("/admin/delivery/offer/", {"status__exact": "pending"})
    declined = client.get("/admin/delivery/offer/", {"status__exact": "declined"})
    change = client.post(f"/admin/delivery/offer/{offer.pk}/change/", {"status": "accepted"})

    assert pending.status_code == 200
    assert str(offer.pk) in pending.content.decode()
    assert str(offer.pk) not in declined.content.decode()
    assert change.status_code == 403
    assert Offer.objects.get().status == Offer.Status.PENDING
