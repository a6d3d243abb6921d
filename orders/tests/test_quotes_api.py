"""Quotes: a server-side, PostGIS-measured price inside a service area, or a 400 saying why not."""

from datetime import timedelta

import pytest
from django.contrib.gis.geos import MultiPolygon, Polygon
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.tests.factories import UserFactory
from orders.models import Quote, ServiceArea, Tariff
from orders.tests.factories import DROP, OUTSIDE, PICKUP, ServiceAreaFactory
from orders.tests.support import QUOTE_URL, client_for, quote_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return UserFactory()


def test_a_quote_prices_the_postgis_distance_with_the_default_tariff(
    customer, service_area, settings
):
    # given the default pricing: ₹30 base, ₹10/km, 5 kg included, ₹5 per extra kg
    settings.PRICING_BASE_FARE_PAISE = 3000
    settings.PRICING_PER_KM_PAISE = 1000
    settings.PRICING_MIN_FARE_PAISE = 0
    settings.PRICING_FREE_WEIGHT_GRAMS = 5000
    settings.PRICING_PER_EXTRA_KG_PAISE = 500

    # when MG Road -> Koramangala (about 5.15 km as the crow flies) with a 6.2 kg package
    response = client_for(customer).post(QUOTE_URL, quote_body(weight_grams=6200), format="json")

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert 5100 < body["distance_m"] < 5200
    codes = {line["code"]: line["amount_paise"] for line in body["breakdown"]}
    assert codes["base_fare"] == 3000
    assert codes["distance"] == -(-1000 * body["distance_m"] // 1000)
    assert codes["weight_surcharge"] == 2 * 500  # 1.2 kg over: two started kilograms
    assert body["total_paise"] == sum(codes.values())
    assert body["currency"] == "INR"
    expires = parse_datetime(body["expires_at"])
    assert timedelta(seconds=590) < expires - timezone.now() <= timedelta(seconds=600)
    quote = Quote.objects.get(pk=body["id"])
    assert quote.customer == customer and quote.total_paise == body["total_paise"]


def test_an_area_tariff_set_by_ops_replaces_the_defaults_and_tops_up_to_the_minimum(
    customer, service_area
):
    # given finance set a tariff for the area with a high minimum fare
    Tariff.objects.create(
        service_area=service_area,
        base_fare_paise=2000,
        per_km_paise=0,
        minimum_fare_paise=9900,
        free_weight_grams=10_000,
        per_extra_kg_paise=0,
    )

    # when
    body = client_for(customer).post(QUOTE_URL, quote_body(), format="json").json()

    # then
    assert body["breakdown"] == [
        {"code": "base_fare", "label": "Base fare", "amount_paise": 2000},
        {"code": "distance", "label": "Distance 5.2 km", "amount_paise": 0},
        {"code": "minimum_fare", "label": "Top-up to the minimum fare", "amount_paise": 7900},
    ]
    assert body["total_paise"] == 9900


@pytest.mark.parametrize(
    ("body", "field_path"),
    [
        pytest.param(quote_body(pickup={**PICKUP, "lat": 90.5}), ("pickup", "lat"), id="lat-high"),
        pytest.param(quote_body(drop={**DROP, "lat": -91}), ("drop", "lat"), id="lat-low"),
        pytest.param(quote_body(pickup={**PICKUP, "lng": 180.1}), ("pickup", "lng"), id="lng-high"),
        pytest.param(quote_body(drop={**DROP, "lng": "nan"}), ("drop", "lng"), id="lng-nan"),
        pytest.param(
            quote_body(weight_grams=-5), ("package", "weight_grams"), id="weight-negative"
        ),
        pytest.param(quote_body(weight_grams=0), ("package", "weight_grams"), id="weight-zero"),
        pytest.param(quote_body(weight_grams=20_001), ("package", "weight_grams"), id="too-heavy"),
        pytest.param(
            {"drop": DROP, "package": {"description": "x", "weight_grams": 1}},
            ("pickup",),
            id="no-pickup",
        ),
        pytest.param(
            quote_body(pickup={"lat": 12.97, "lng": 77.59}), ("pickup", "address"), id="no-address"
        ),
        pytest.param(
            {**quote_body(), "package": {"weight_grams": 100}},
            ("package", "description"),
            id="no-description",
        ),
    ],
)
def test_invalid_input_is_answered_400_with_the_field_and_nothing_is_stored(
    customer, service_area, body, field_path
):
    response = client_for(customer).post(QUOTE_URL, body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    fields = error["fields"]
    for name in field_path:
        assert name in fields, error
        fields = fields[name]
    assert not Quote.objects.exists()


@pytest.mark.parametrize(
    ("pickup", "drop", "fields"),
    [
        (OUTSIDE, DROP, {"pickup"}),
        (PICKUP, OUTSIDE, {"drop"}),
        (OUTSIDE, OUTSIDE, {"pickup", "drop"}),
    ],
)
def test_places_outside_every_service_area_are_refused(
    customer, service_area, pickup, drop, fields
):
    response = client_for(customer).post(QUOTE_URL, quote_body(pickup, drop), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "outside_service_area"
    assert set(response.json()["error"]["fields"]) == fields
    assert not Quote.objects.exists()


def test_an_inactive_service_area_serves_nobody(customer, service_area):
    service_area.is_active = False
    service_area.save()

    response = client_for(customer).post(QUOTE_URL, quote_body(), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "outside_service_area"


def test_only_customers_get_quotes_and_anonymous_callers_are_refused(api_client, service_area):
    rider_only = UserFactory(is_customer=False, is_rider=True)

    assert client_for(rider_only).post(QUOTE_URL, quote_body(), format="json").status_code == 403
    assert api_client.post(QUOTE_URL, quote_body(), format="json").status_code == 401
    assert not Quote.objects.exists()


def _square_around(*places, half_side=0.01) -> MultiPolygon:
    """The smallest lng/lat box holding the places, widened by half_side degrees."""
    lngs, lats = [p["lng"] for p in places], [p["lat"] for p in places]
    west, east = min(lngs) - half_side, max(lngs) + half_side
    south, north = min(lats) - half_side, max(lats) + half_side
    ring = ((west, south), (east, south), (east, north), (west, north), (west, south))
    return MultiPolygon(Polygon(ring), srid=4326)


def test_pickup_and_drop_in_two_different_areas_are_refused(customer):
    # given one area around the pickup only and another around the drop only
    ServiceAreaFactory(name="Around MG Road", area=_square_around(PICKUP))
    ServiceAreaFactory(name="Around Koramangala", area=_square_around(DROP))

    response = client_for(customer).post(QUOTE_URL, quote_body(), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "outside_service_area"
    assert error["fields"] == {"drop": ["Pickup and drop must lie in the same service area."]}
    assert not Quote.objects.exists()


def test_of_overlapping_areas_the_quote_takes_the_one_holding_both_places_and_its_tariff(
    customer,
):
    # given an area around the pickup only (first by name, with a tariff of its own), and one
    # around both places with another tariff
    pickup_only = ServiceAreaFactory(name="A: around MG Road", area=_square_around(PICKUP))
    both = ServiceAreaFactory(name="B: the two places", area=_square_around(PICKUP, DROP))
    for area, base_fare in ((pickup_only, 11_100), (both, 22_200)):
        Tariff.objects.create(
            service_area=area,
            base_fare_paise=base_fare,
            per_km_paise=0,
            free_weight_grams=9999,
            per_extra_kg_paise=0,
        )

    response = client_for(customer).post(QUOTE_URL, quote_body(), format="json")

    # then the quote is priced in the area holding both, by that area's tariff
    assert response.status_code == 201, response.content
    assert response.json()["total_paise"] == 22_200
    assert Quote.objects.get().service_area == both
    assert ServiceArea.objects.count() == 2
