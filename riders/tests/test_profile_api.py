"""GET/PUT/PATCH /api/v1/riders/me/: a rider's own profile, created on the first visit."""

import pytest

from accounts.tests.factories import UserFactory
from accounts.tests.support import sign_in
from riders.models import Rider
from riders.tests.factories import RiderFactory, RiderUserFactory
from riders.tests.support import ME_URL, as_user

pytestmark = pytest.mark.django_db


def test_a_new_rider_gets_an_unapproved_offline_profile_on_the_first_visit(api_client):
    # given someone who just signed in to the rider app
    tokens = sign_in(api_client, "+919845000001", role="rider")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")

    # when
    response = api_client.get(ME_URL)

    # then
    assert response.status_code == 200, response.content
    assert response.json() == {
        "name": "",
        "vehicle_type": "motorcycle",
        "vehicle_number": "",
        "status": "offline",
        "approved": False,
    }
    rider = Rider.objects.get(user__phone="+919845000001")
    assert (rider.approved, rider.status) == (False, Rider.Status.OFFLINE)

    # and a second visit reuses it
    assert api_client.get(ME_URL).status_code == 200
    assert Rider.objects.filter(user__phone="+919845000001").count() == 1


def test_put_replaces_name_and_vehicle_of_an_unapproved_rider(api_client):
    user = RiderUserFactory(name="Old Name")
    as_user(api_client, user)

    response = api_client.put(
        ME_URL,
        {"name": "Ravi Kumar", "vehicle_type": "ev_scooter", "vehicle_number": "ka 05 mx 4321"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "name": "Ravi Kumar",
        "vehicle_type": "ev_scooter",
        "vehicle_number": "KA05MX4321",
        "status": "offline",
        "approved": False,
    }
    rider = Rider.objects.select_related("user").get(user=user)
    assert (rider.user.name, rider.vehicle_type, rider.vehicle_number) == (
        "Ravi Kumar",
        "ev_scooter",
        "KA05MX4321",
    )


def test_put_needs_every_field_and_patch_does_not(api_client):
    rider = RiderFactory(approved=False, vehicle_type="scooter")
    as_user(api_client, rider.user)

    put = api_client.put(ME_URL, {"name": "Only Name"}, format="json")
    patch = api_client.patch(ME_URL, {"name": "Only Name"}, format="json")

    assert put.status_code == 400
    assert set(put.json()["error"]["fields"]) == {"vehicle_type", "vehicle_number"}
    assert patch.status_code == 200
    assert patch.json()["name"] == "Only Name"
    assert patch.json()["vehicle_type"] == "scooter"


@pytest.mark.parametrize(
    "body",
    [{"status": "online"}, {"approved": True}, {"name": "X", "approved": True}],
)
def test_status_and_approval_cannot_be_set_by_the_rider(api_client, body):
    rider = RiderFactory(approved=False)
    as_user(api_client, rider.user)

    response = api_client.patch(ME_URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    rider.refresh_from_db()
    assert (rider.approved, rider.status) == (False, Rider.Status.OFFLINE)


def test_an_invalid_vehicle_type_is_refused(api_client):
    as_user(api_client, RiderUserFactory())

    response = api_client.patch(ME_URL, {"vehicle_type": "truck"}, format="json")

    assert response.status_code == 400
    assert "vehicle_type" in response.json()["error"]["fields"]


def test_an_approved_riders_vehicle_is_locked_but_the_name_is_not(api_client):
    rider = RiderFactory(approved=True, vehicle_number="KA01AB0001")
    as_user(api_client, rider.user)

    vehicle = api_client.patch(ME_URL, {"vehicle_number": "KA01ZZ9999"}, format="json")
    same_vehicle = api_client.patch(
        ME_URL, {"vehicle_number": "KA01AB0001", "name": "New"}, format="json"
    )

    assert vehicle.status_code == 409
    assert vehicle.json()["error"]["code"] == "rider_vehicle_locked"
    assert same_vehicle.status_code == 200
    rider.refresh_from_db()
    assert rider.vehicle_number == "KA01AB0001"
    assert rider.user.name == "New"


@pytest.mark.parametrize("method", ["get", "put", "patch"])
def test_customers_and_staff_are_not_riders(api_client, method):
    for user in (UserFactory(is_customer=True), UserFactory(is_staff=True, is_customer=False)):
        as_user(api_client, user)

        response = getattr(api_client, method)(ME_URL, {"name": "x"}, format="json")

        assert response.status_code == 403
        assert response.json()["error"]["code"] == "not_a_rider"
    assert not Rider.objects.exists()


def test_anonymous_callers_are_refused(api_client):
    assert api_client.get(ME_URL).status_code == 401
