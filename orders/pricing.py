"""Quote pricing: the trip's PostGIS distance and the tariff that turns it into paise."""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.gis.geos import Point
from django.db import connection

from orders.models import ServiceArea, Tariff


@dataclass(frozen=True)
class TariffTerms:
    base_fare_paise: int
    per_km_paise: int
    minimum_fare_paise: int
    free_weight_grams: int
    per_extra_kg_paise: int

    @classmethod
    def defaults(cls) -> "TariffTerms":
        return cls(
            base_fare_paise=settings.PRICING_BASE_FARE_PAISE,
            per_km_paise=settings.PRICING_PER_KM_PAISE,
            minimum_fare_paise=settings.PRICING_MIN_FARE_PAISE,
            free_weight_grams=settings.PRICING_FREE_WEIGHT_GRAMS,
            per_extra_kg_paise=settings.PRICING_PER_EXTRA_KG_PAISE,
        )


def tariff_for_area(area: ServiceArea) -> TariffTerms:
    """The area's own tariff, or the PRICING_* settings when ops have not set one.

    Reads `area.tariff`: no statement when the area was loaded with select_related("tariff").
    """
    try:
        tariff = area.tariff
    except Tariff.DoesNotExist:
        return TariffTerms.defaults()
    return TariffTerms(
        base_fare_paise=tariff.base_fare_paise,
        per_km_paise=tariff.per_km_paise,
        minimum_fare_paise=tariff.minimum_fare_paise,
        free_weight_grams=tariff.free_weight_grams,
        per_extra_kg_paise=tariff.per_extra_kg_paise,
    )


def trip_distance_m(pickup: Point, drop: Point) -> int:
    """Geodesic distance in whole metres (rounded up), computed by PostGIS on geography."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ST_Distance("
            "ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, "
            "ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography)",
            [pickup.x, pickup.y, drop.x, drop.y],
        )
        (metres,) = cursor.fetchone()
    return int(-(-metres // 1))


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def price_trip(*, terms: TariffTerms, distance_m: int, weight_grams: int) -> list[dict]:
    """The breakdown lines, in paise; their sum is the total. Integer arithmetic only."""
    lines = [
        {"code": "base_fare", "label": "Base fare", "amount_paise": terms.base_fare_paise},
        {
            "code": "distance",
            "label": f"Distance {distance_m / 1000:.1f} km",
            # Pro rata per metre, rounded up to the paisa.
            "amount_paise": _ceil_div(terms.per_km_paise * distance_m, 1000),
        },
    ]
    extra_grams = weight_grams - terms.free_weight_grams
    if extra_grams > 0 and terms.per_extra_kg_paise:
        extra_kg = _ceil_div(extra_grams, 1000)
        lines.append(
            {
                "code": "weight_surcharge",
                "label": f"Weight surcharge ({extra_kg} kg over {terms.free_weight_grams} g)",
                "amount_paise": extra_kg * terms.per_extra_kg_paise,
            }
        )
    subtotal = sum(line["amount_paise"] for line in lines)
    if subtotal < terms.minimum_fare_paise:
        lines.append(
            {
                "code": "minimum_fare",
                "label": "Top-up to the minimum fare",
                "amount_paise": terms.minimum_fare_paise - subtotal,
            }
        )
    return lines
