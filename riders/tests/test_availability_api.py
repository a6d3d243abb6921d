"""POST me/online/ and me/offline/: who may take offers, and the idle sweep that follows."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import UserFactory
from riders.models import Rider
from riders.tasks import set_idle_riders_offline
from riders.tests.factories import RiderFactory, RiderUserFactory, located
from riders.tests.support import LOCATION_URL, OFFLINE_URL, ONLINE_URL, as_user, fix

pytestmark = pytest.mark.django_db


@pytest.mark.checklist("P9.6")
def test_an_approved_rider_goes_online_and_offline(api_client):
    rider = RiderFactory(approved=True)
    as_user(api_client, rider.user)

    online = api_client.post(ONLINE_URL)
    again = api_client.post(ONLINE_URL)
    rider.refresh_from_db()
    online_since = rider.status_changed_at

    assert online.status_code == 200, online.content
    assert online.json()["status"] == "online"
    assert again.status_code == 200  # idempotent
    assert rider.status == Rider.Status.ONLINE
    assert online_since is not None

    offline = api_client.post(OFFLINE_URL)

    assert offline.status_code == 200
    assert offline.json()["status"] == "offline"
    rider.refresh_from_db()
    assert rider.status == Rider.Status.OFFLINE
    assert rider.status_changed_at > online_since


def test_an_unapproved_rider_cannot_go_online(api_client):
    # given a rider who signed up but was not approved yet (the profile is made on first use)
    user = RiderUserFactory()
    as_user(api_client, user)

    # when
    response = api_client.post(ONLINE_URL)

    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "rider_not_approved"
    assert Rider.objects.get(user=user).status == Rider.Status.OFFLINE


def test_a_suspended_rider_cannot_go_online_and_stays_suspended(api_client):
    rider = RiderFactory(approved=True, status=Rider.Status.SUSPENDED)
    as_user(api_client, rider.user)

    online = api_client.post(ONLINE_URL)
    offline = api_client.post(OFFLINE_URL)

    assert online.status_code == 403
    assert online.json()["error"]["code"] == "rider_suspended"
    assert offline.status_code == 200
    assert offline.json()["status"] == "suspended"
    rider.refresh_from_db()
    assert rider.status == Rider.Status.SUSPENDED


def test_a_rider_on_a_delivery_cannot_go_offline(api_client):
    rider = RiderFactory(approved=True, status=Rider.Status.ON_DELIVERY)
    as_user(api_client, rider.user)

    offline = api_client.post(OFFLINE_URL)
    online = api_client.post(ONLINE_URL)

    assert offline.status_code == 409
    assert offline.json()["error"]["code"] == "rider_on_delivery"
    assert online.status_code == 200
    assert online.json()["status"] == "on_delivery"
    rider.refresh_from_db()
    assert rider.status == Rider.Status.ON_DELIVERY


@pytest.mark.parametrize("url", [ONLINE_URL, OFFLINE_URL])
def test_only_riders_change_availability(api_client, url):
    as_user(api_client, UserFactory(is_customer=True))

    response = api_client.post(url)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_a_rider"


def test_coming_back_online_with_yesterdays_fix_is_not_swept_offline_at_once(api_client, settings):
    # given a rider whose last fix is from yesterday
    settings.RIDER_IDLE_OFFLINE_MINUTES = 10
    rider = located(RiderFactory(approved=True), lat=12.97, lng=77.6, seconds_ago=86_400)
    as_user(api_client, rider.user)

    # when they come online and the idle sweep runs before their first ping
    assert api_client.post(ONLINE_URL).status_code == 200
    set_idle_riders_offline()

    # then they are still online
    rider.refresh_from_db()
    assert rider.status == Rider.Status.ONLINE

    # but once they have been online and silent past the limit, the sweep takes them offline
    Rider.objects.filter(pk=rider.pk).update(
        status_changed_at=timezone.now() - timedelta(minutes=11)
    )
    assert set_idle_riders_offline() == 1
    rider.refresh_from_db()
    assert rider.status == Rider.Status.OFFLINE


@pytest.mark.django_db(transaction=True)  # the ping's service runs in a worker thread
def test_a_ping_keeps_an_online_rider_online(api_client, settings):
    # given an online rider who came online long ago and whose last fix is old
    settings.RIDER_IDLE_OFFLINE_MINUTES = 10
    long_ago = timezone.now() - timedelta(minutes=30)
    rider = located(RiderFactory(approved=True), lat=12.97, lng=77.6, seconds_ago=1_800)
    Rider.objects.filter(pk=rider.pk).update(
        status=Rider.Status.ONLINE, status_changed_at=long_ago, updated_at=long_ago
    )
    as_user(api_client, rider.user)

    # when a ping arrives before the sweep
    assert api_client.post(LOCATION_URL, fix((12.97, 77.6)), format="json").status_code == 202
    set_idle_riders_offline()

    # then the rider stays online
    rider.refresh_from_db()
    assert rider.status == Rider.Status.ONLINE
