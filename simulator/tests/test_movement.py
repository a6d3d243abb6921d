"""The simulator's riders move like two-wheelers on streets, within the server's location rules,
and claim arrival only where the server's geofence lets them."""

import json
import math
import os
import random
import stat
import time
from datetime import timedelta
from itertools import pairwise

import pytest
from django.conf import settings
from django.contrib.gis.db.models.functions import Distance
from django.contrib.gis.geos import Point as GeosPoint

from riders.services import LOCATION_JITTER_METRES
from riders.tests.factories import RiderFactory, located
from simulator.api import TokenStore, token_expiry
from simulator.geo import (
    Riding,
    Route,
    Zone,
    bearing,
    displacement,
    fix_is_plausible,
    gps_noise,
    metres_between,
    offset,
    street_route,
)
from simulator.riders import GPS_NOISE_M, SimRider, rider_settings_check
from simulator.run import Config, Simulation
from simulator.stats import percentile

MG_ROAD = (12.9716, 77.5946)
# The test service area's box (orders.tests.factories.AREA): lng 77.50..77.70, lat 12.90..13.10.
BBOX = (77.50, 12.90, 77.70, 13.10)


def ride(route: Route, riding: Riding, rng: random.Random, tick_seconds: float):
    """(seconds, metres ridden along the route, true position, reported fix) every tick until
    the route is done, as SimRider._move and _fix do it."""
    track = [(0.0, 0.0, route.position, gps_noise(route.position, rng, GPS_NOISE_M))]
    elapsed = 0.0
    while not route.done:
        elapsed += tick_seconds
        before = route.left_m
        route.advance(riding.tick_speed_mps(rng) * tick_seconds)
        ridden = before - route.left_m
        track.append((elapsed, ridden, route.position, gps_noise(route.position, rng, GPS_NOISE_M)))
        assert elapsed < 24 * 3600, "the route never ended"
    return track


@pytest.mark.parametrize("seed", range(20))
def test_a_street_route_runs_from_start_to_end_with_turns_along_the_grid(seed):
    rng = random.Random(seed)
    start = MG_ROAD
    end = offset(start, rng.uniform(-3000, 3000), rng.uniform(-3000, 3000))
    angle = rng.uniform(-25, 25)

    points = street_route(start, end, rng, grid_angle_deg=angle)

    assert points[0] == start and points[-1] == end
    straight = metres_between(start, end)
    route = Route(points)
    # Manhattan distance on the turned grid, give or take the corners' wobble
    east, north = displacement(start, end)
    cos_a, sin_a = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    manhattan = abs(east * cos_a + north * sin_a) + abs(-east * sin_a + north * cos_a)
    assert straight - 1 <= route.length_m <= manhattan + 16 * len(points)
    assert route.length_m <= 1.45 * straight + 16 * len(points)
    # every leg but the wobble runs along one of the grid's two directions
    for a, b in pairwise(points):
        heading = bearing(a, b)
        if metres_between(a, b) < 100:
            continue  # a short last leg or wobble: its direction says little
        # the grid's directions, as compass headings, are -angle + k * 90 degrees
        off_grid = min(abs(((heading + angle - k * 90) + 180) % 360 - 180) for k in range(4))
        assert off_grid < 10, (heading, angle)
    if min(abs(east), abs(north)) > 600:
        assert len(points) >= 4, "a diagonal trip turns more than once"


@pytest.mark.parametrize("seed", range(10))
def test_riders_keep_two_wheeler_speeds_and_the_servers_speed_rule(seed):
    rng = random.Random(seed)
    riding = Riding.pick(rng, 15, 30)
    start = MG_ROAD
    end = offset(start, rng.uniform(-4000, 4000), rng.uniform(-4000, 4000))
    route = Route(street_route(start, end, rng, grid_angle_deg=10))
    tick = 4.0

    track = ride(route, riding, rng, tick)

    speeds = []
    for (t0, _, true0, fix0), (t1, ridden, true1, fix1) in pairwise(track):
        kmh = ridden / (t1 - t0) * 3.6
        speeds.append(kmh)
        # along the streets, never faster than the rider's top speed; the straight line is
        # shorter still
        assert kmh <= 30.01  # (floating point: lengths are summed leg by leg)
        assert metres_between(true0, true1) <= ridden + 1e-6
        # and what the phone reports passes the server's check between consecutive fixes
        assert fix_is_plausible(
            fix0,
            fix1,
            t1 - t0,
            max_speed_kmh=settings.RIDER_MAX_SPEED_KMH,
            jitter_m=LOCATION_JITTER_METRES,
        )
        # with room to spare: noise is a few metres, speed a quarter of the limit
        assert metres_between(fix0, fix1) < 30 / 3.6 * (t1 - t0) + 2 * GPS_NOISE_M
    # a tick is a stop (a signal, traffic) or 15-30 km/h, except the last, which ends early
    assert all(kmh == 0 or kmh >= 14.99 for kmh in speeds[:-1])
    moving = [kmh for kmh in speeds[:-1] if kmh > 0]
    assert len(moving) >= 0.75 * len(speeds[:-1])
    # the whole trip: a plausible city average, below the top speed
    total = sum(ridden for _, ridden, _, _ in track)
    assert 10 < total / track[-1][0] * 3.6 < 30
    assert abs(total - route.length_m) < 1


def test_a_ticks_speed_is_a_stop_or_within_the_riders_range():
    rng = random.Random(3)
    for _ in range(200):
        riding = Riding.pick(rng, 15, 30)
        assert 15 <= riding.cruise_kmh <= 30
        for _ in range(20):
            mps = riding.tick_speed_mps(rng)
            assert mps == 0 or 15 / 3.6 - 1e-9 <= mps <= 30 / 3.6 + 1e-9


def test_the_servers_speed_rule_is_mirrored():
    here = MG_ROAD
    rule = {"max_speed_kmh": 120, "jitter_m": 50}
    # 120 km/h is 33.3 m/s: 10 s allow 333 m plus 50 m of wander
    assert fix_is_plausible(here, offset(here, 380, 0), 10, **rule)
    assert not fix_is_plausible(here, offset(here, 390, 0), 10, **rule)
    assert fix_is_plausible(here, offset(here, 45, 0), 0, **rule)


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(5))
def test_the_fix_at_the_end_of_a_route_is_inside_the_servers_geofence(seed):
    # given a rider who rode to a pickup and reports the fix from there
    rng = random.Random(seed)
    pickup = offset(MG_ROAD, rng.uniform(-2000, 2000), rng.uniform(-2000, 2000))
    route = Route(street_route(MG_ROAD, pickup, rng, grid_angle_deg=-12))
    track = ride(route, Riding.pick(rng, 15, 30), rng, 4.0)
    _, _, position, fix = track[-1]
    assert position == pickup

    # then PostGIS, measuring as delivery.services.steps._require_near does, finds it inside the
    # geofence, and our own distance agrees with PostGIS's to well under a metre
    rider = located(RiderFactory(), lat=fix[0], lng=fix[1])
    measured = (
        type(rider)
        .objects.filter(pk=rider.pk)
        .annotate(d=Distance("last_location", GeosPoint(pickup[1], pickup[0], srid=4326)))
        .values_list("d", flat=True)
        .get()
    )
    assert measured.m <= GPS_NOISE_M + 0.5 < settings.DELIVERY_GEOFENCE_M
    assert abs(measured.m - metres_between(fix, pickup)) < 0.5


def test_zone_points_and_trips_stay_inside_the_zone():
    zone = Zone.inside_bbox(BBOX, radius_m=5000)
    assert zone.radius_m == 5000
    assert metres_between(zone.centre, (13.0, 77.6)) < 1
    rng = random.Random(1)
    for _ in range(300):
        assert zone.contains(zone.random_point(rng))
        pickup, drop = zone.random_trip(rng, 1000, 4000)
        assert zone.contains(pickup) and zone.contains(drop)
    distances = [metres_between(*zone.random_trip(rng, 1000, 4000)) for _ in range(300)]
    assert sum(1000 <= d <= 4000 for d in distances) >= 0.95 * len(distances)


def test_a_small_service_area_shrinks_the_zone_to_fit():
    small = (77.59, 12.97, 77.60, 12.98)  # about 1.1 km each way
    zone = Zone.inside_bbox(small, radius_m=5000)
    assert 450 < zone.radius_m < 0.5 * 1085
    rng = random.Random(2)
    for _ in range(100):
        lat, lng = zone.random_point(rng)
        assert 12.97 <= lat <= 12.98 and 77.59 <= lng <= 77.60


def test_options_that_would_break_the_servers_rules_are_refused():
    assert Config().problems() == []
    assert rider_settings_check(30) is None
    assert "RIDER_MAX_SPEED_KMH" in rider_settings_check(settings.RIDER_MAX_SPEED_KMH)
    problems = Config(speed_kmh=(30, 15), decline_rate=2, riders=10_001).problems()
    assert len(problems) == 3


def test_the_share_of_riders_on_http_is_exact_and_spread_out():
    for share, over_http in ((0.5, [1, 3, 5, 7, 9]), (0.2, [4, 9]), (0.0, []), (1.0, range(10))):
        simulation = Simulation(Config(riders=10, http_share=share, seed=1))
        riders = [SimRider(simulation, index) for index in range(10)]
        assert [rider.index for rider in riders if rider.over_http] == list(over_http)


def test_second_phones_and_new_customers_are_checked():
    assert Config(customers=5, second_phones=5).problems() == []
    assert Config(customers=0, new_customer_per_order=True).problems() == []
    assert len(Config(customers=5, second_phones=6).problems()) == 1
    assert len(Config(customers=0).problems()) == 1  # bookings need customers


def test_the_token_cache_keeps_refresh_tokens_per_server_and_only_for_its_owner(tmp_path):
    path = tmp_path / "sub" / "tokens.json"
    store = TokenStore(path, "http://127.0.0.1:5000/")
    store.put("+919000050000", "rider", "r1")
    TokenStore(path, "http://127.0.0.1:6000").put("+919000050000", "rider", "other")

    again = TokenStore(path, "http://127.0.0.1:5000")
    assert again.get("+919000050000") == {"role": "rider", "refresh": "r1"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again.drop("+919000050000")
    assert TokenStore(path, "http://127.0.0.1:5000").get("+919000050000") is None
    assert json.loads(path.read_text())["http://127.0.0.1:6000"]["+919000050000"]["refresh"]


def test_token_expiry_is_read_from_the_jwt():
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken()
    token.set_exp(lifetime=timedelta(minutes=15))
    assert abs(token_expiry(str(token)) - (time.time() + 900)) < 5
    assert token_expiry("not a token") == 0


def test_percentiles():
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN
    assert percentile([3, 1, 2], 0.5) == 2
    assert percentile(list(range(1, 101)), 0.95) == 95
