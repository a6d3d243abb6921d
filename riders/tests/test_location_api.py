"""POST /api/v1/riders/me/location/: accepted fixes move the rider; bad ones are refused."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import UserFactory
from riders.models import Rider, RiderLocation
from riders.serializers import RiderLocationInputSerializer
from riders.services import rider_location_record
from riders.tests.factories import RiderFactory, RiderUserFactory, access_token, located
from riders.tests.support import LOCATION_URL, MG_ROAD, NORTH_1KM, as_user, fix

# Transactional: the view runs the service in a worker thread with its own connection (as in
# production), which would not see a rolled-back test transaction's rows.
pytestmark = pytest.mark.django_db(transaction=True)


def post_fix(client, body):
    return client.post(LOCATION_URL, body, format="json")


def position(rider: Rider) -> tuple[float, float] | None:
    rider.refresh_from_db()
    if rider.last_location is None:
        return None
    return round(rider.last_location.y, 6), round(rider.last_location.x, 6)


@pytest.fixture
def rider(api_client) -> Rider:
    rider = RiderFactory()
    as_user(api_client, rider.user)
    return rider


@pytest.mark.checklist("P9.6")
def test_a_fix_moves_the_rider_and_joins_the_trail(api_client, rider):
    # when
    body = fix(MG_ROAD, seconds_ago=5)
    response = post_fix(api_client, body)

    # then
    assert response.status_code == 202, response.content
    assert response.json()["latest"] is True
    assert position(rider) == MG_ROAD
    assert rider.last_location_at.isoformat() == body["recorded_at"]
    point = RiderLocation.objects.get(rider=rider)
    assert (round(point.point.y, 6), round(point.point.x, 6)) == MG_ROAD
    assert (point.accuracy_m, point.heading, point.speed_mps) == (8.5, 90, 6.2)
    assert point.recorded_at == rider.last_location_at


def test_a_ping_is_one_statement(rider):
    # The hot path: one round trip, no user lookup before it and no read-back after it. The
    # view runs this service in a worker thread; here it runs in this one, to be counted.
    body = RiderLocationInputSerializer(data=fix())
    assert body.is_valid(), body.errors
    with CaptureQueriesContext(connection) as queries:
        rider_location_record(user_id=rider.user_id, **body.validated_data)

    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["SELECT"]
    assert "rider_location_ping(" in queries.captured_queries[0]["sql"]
    assert RiderLocation.objects.filter(rider=rider).count() == 1


def test_the_trail_keeps_every_fix_in_order(api_client, rider):
    for seconds_ago, lat_lng in [(60, MG_ROAD), (30, (12.9790, 77.6050)), (0, NORTH_1KM)]:
        assert post_fix(api_client, fix(lat_lng, seconds_ago=seconds_ago)).status_code == 202

    trail = list(RiderLocation.objects.filter(rider=rider).order_by("recorded_at"))
    assert [round(p.point.y, 4) for p in trail] == [12.9756, 12.979, 12.9856]
    assert position(rider) == NORTH_1KM


def test_an_older_fix_joins_the_trail_but_does_not_move_the_rider(api_client, rider):
    # given a fix from 10 s ago
    assert post_fix(api_client, fix(NORTH_1KM, seconds_ago=10)).status_code == 202

    # when one from 60 s ago arrives late (the app was offline)
    late = post_fix(api_client, fix(MG_ROAD, seconds_ago=60))

    # then it is kept, but the rider stays at the newer position
    assert late.status_code == 202
    assert late.json()["latest"] is False
    assert position(rider) == NORTH_1KM
    assert RiderLocation.objects.filter(rider=rider).count() == 2
    assert timezone.now() - rider.last_location_at < timedelta(seconds=15)


def test_a_resent_fix_is_stored_once(api_client, rider):
    body = fix(seconds_ago=3)

    first = post_fix(api_client, body)
    again = post_fix(api_client, body)

    assert (first.status_code, again.status_code) == (202, 202)
    assert RiderLocation.objects.filter(rider=rider).count() == 1


def test_fixes_under_a_second_apart_are_refused_and_neither_stored_nor_counted_twice(
    api_client, rider, settings
):
    # given one fix stored, and the rule at its default (a second apart by recorded_at)
    settings.RIDER_MIN_FIX_SECONDS = 1.0
    at = timezone.now() - timedelta(seconds=10)
    assert post_fix(api_client, fix(at=at)).status_code == 202

    # when fixes follow 0.4 s later and earlier, then 1.2 s later
    sooner = post_fix(api_client, fix(at=at + timedelta(seconds=0.4)))
    earlier = post_fix(api_client, fix(at=at - timedelta(seconds=0.4)))
    later = post_fix(api_client, fix(at=at + timedelta(seconds=1.2)))

    # then the two close ones are refused with 429 and a Retry-After, and only two are kept
    for refused in (sooner, earlier):
        assert refused.status_code == 429, refused.content
        assert refused.json()["error"]["code"] == "location_too_frequent"
        assert refused["Retry-After"] == "1"
    assert later.status_code == 202
    kept = RiderLocation.objects.filter(rider=rider).order_by("recorded_at")
    assert [location.recorded_at for location in kept] == [at, at + timedelta(seconds=1.2)]


def test_a_stale_fix_is_refused(api_client, rider, settings):
    settings.RIDER_LOCATION_MAX_AGE_SECONDS = 120

    stale = post_fix(api_client, fix(seconds_ago=125))
    fresh_enough = post_fix(api_client, fix(seconds_ago=110))

    assert stale.status_code == 400
    assert stale.json()["error"]["code"] == "location_stale"
    assert fresh_enough.status_code == 202
    assert RiderLocation.objects.filter(rider=rider).count() == 1


def test_a_fix_from_the_future_is_refused(api_client, rider):
    ahead = post_fix(api_client, fix(seconds_ago=-40))
    slightly_ahead = post_fix(api_client, fix(seconds_ago=-20))  # a phone clock a bit fast

    assert ahead.status_code == 400
    assert ahead.json()["error"]["code"] == "location_from_future"
    assert slightly_ahead.status_code == 202


def test_a_jump_faster_than_the_speed_limit_is_refused(api_client, rider, settings):
    # given a fix at MG Road 60 s ago (limit 120 km/h: 2 km in a minute)
    settings.RIDER_MAX_SPEED_KMH = 120
    located(rider, lat=MG_ROAD[0], lng=MG_ROAD[1], seconds_ago=60)

    # when the next fix is 5 km away, then 1.1 km away
    five_km_north = (MG_ROAD[0] + 0.045, MG_ROAD[1])
    jump = post_fix(api_client, fix(five_km_north))
    ride = post_fix(api_client, fix(NORTH_1KM))

    # then the jump is refused and changes nothing, and the ride is accepted
    assert jump.status_code == 400
    assert jump.json()["error"]["code"] == "location_impossible_speed"
    assert ride.status_code == 202
    assert position(rider) == NORTH_1KM
    assert RiderLocation.objects.filter(rider=rider).count() == 1


def test_the_speed_limit_comes_from_settings(api_client, rider, settings):
    located(rider, lat=MG_ROAD[0], lng=MG_ROAD[1], seconds_ago=20)
    settings.RIDER_MAX_SPEED_KMH = 60  # 1.1 km in 20 s is ~200 km/h

    assert post_fix(api_client, fix(NORTH_1KM)).status_code == 400
    settings.RIDER_MAX_SPEED_KMH = 250
    assert post_fix(api_client, fix(NORTH_1KM)).status_code == 202


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lat": 90.5}, "lat"),
        ({"lat": -91}, "lat"),
        ({"lng": 180.01}, "lng"),
        ({"lng": "east"}, "lng"),
        ({"lat": None}, "lat"),
        ({"accuracy_m": -1}, "accuracy_m"),
        ({"heading": 361}, "heading"),
        ({"speed_mps": -0.1}, "speed_mps"),
        ({"recorded_at": "yesterday"}, "recorded_at"),
        ({"recorded_at": "2026-01-31T10:15:00"}, "recorded_at"),  # no UTC offset
    ],
)
def test_out_of_range_or_malformed_fields_are_refused(api_client, rider, changes, field):
    response = post_fix(api_client, {**fix(), **changes})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]
    assert not RiderLocation.objects.exists()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_coordinates_are_refused(api_client, rider, number):
    body = fix()
    raw = f'{{"lat": {number}, "lng": {body["lng"]}, "recorded_at": "{body["recorded_at"]}"}}'

    response = api_client.post(LOCATION_URL, raw, content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["lat"]


def test_optional_fields_may_be_left_out(api_client, rider):
    body = fix()
    for optional in ("accuracy_m", "heading", "speed_mps"):
        del body[optional]

    assert post_fix(api_client, body).status_code == 202
    point = RiderLocation.objects.get(rider=rider)
    assert (point.accuracy_m, point.heading, point.speed_mps) == (None, None, None)


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", ""])
def test_a_body_that_is_not_a_json_object_is_a_400(api_client, rider, raw):
    response = api_client.post(LOCATION_URL, raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"parse_error", "invalid"}


def test_a_rider_without_a_profile_yet_gets_one_with_the_first_fix(api_client):
    user = RiderUserFactory()
    as_user(api_client, user)

    response = post_fix(api_client, fix())

    assert response.status_code == 202
    rider = Rider.objects.get(user=user)
    assert rider.approved is False
    assert position(rider) == MG_ROAD


def test_non_riders_are_refused(api_client):
    customer = UserFactory(is_customer=True)
    as_user(api_client, customer)

    response = post_fix(api_client, fix())

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_a_rider"
    assert not Rider.objects.exists()
    assert not RiderLocation.objects.exists()


def test_a_disabled_rider_is_refused(api_client, rider):
    rider.user.is_active = False
    rider.user.save(update_fields=["is_active"])

    response = post_fix(api_client, fix())

    assert response.status_code == 401
    assert not RiderLocation.objects.exists()


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Token abc"])
def test_a_missing_or_bad_token_is_a_401(api_client, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = api_client.post(LOCATION_URL, fix(), format="json", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] in {"not_authenticated", "token_not_valid"}


def test_other_methods_are_a_405(api_client, rider):
    response = api_client.get(LOCATION_URL)

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_token_that_worked_is_refused_once_it_expires(api_client, rider):
    # given a token that was accepted
    assert post_fix(api_client, fix()).status_code == 202

    # when its 15 minutes are over
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        response = post_fix(api_client, fix())

    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"


def test_the_claims_of_a_token_that_worked_with_another_signature_are_refused(api_client, rider):
    # given the rider's token, accepted
    token = access_token(rider.user)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert post_fix(api_client, fix()).status_code == 202

    # when the same claims come with a signature that is not ours
    header, claims, _ = token.split(".")
    forged = ".".join([header, claims, "A" * 43])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    response = post_fix(api_client, fix())

    # then
    assert response.status_code == 401
