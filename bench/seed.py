"""The benchmark's city: 100,000 riders around Bengaluru, and the riders, orders and customers
that the load plays.

Runs in the bench process against the benchmark database only (devstack.bench_env). Each run
starts from empty app tables, so every run sees the same data.
"""

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.apps import apps
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from orders.models import Order, OrderStatus, PaymentMethod, Quote, ServiceArea
from orders.services import delivery_code_hmac
from riders.models import Rider

CENTRE = (12.9716, 77.5946)  # (lat, lng) MG Road, Bengaluru
# The city the 100,000 riders are spread over: about 33 km by 33 km.
CITY_HALF_DEGREES = 0.15
AREA = MultiPolygon(
    Polygon(
        (
            (77.40, 12.78),
            (77.80, 12.78),
            (77.80, 13.17),
            (77.40, 13.17),
            (77.40, 12.78),
        )
    ),
    srid=4326,
)
METRES_PER_DEGREE = 111_320.0
# Apps whose tables are emptied before a run (Django's own tables and PostGIS's are kept).
APP_LABELS = ("accounts", "orders", "riders", "delivery", "payments", "core", "token_blacklist")


@dataclass(frozen=True)
class Trip:
    """A rider carrying an order, and the order's customer."""

    rider_user: User
    rider_id: uuid.UUID
    customer: User
    order_id: uuid.UUID
    lat: float
    lng: float


def reset() -> None:
    """Empties every app table of the benchmark database, and makes the bench_row baseline."""
    tables = [
        model._meta.db_table
        for label in APP_LABELS
        for model in apps.get_app_config(label).get_models(include_auto_created=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_row (id int PRIMARY KEY, hits bigint NOT NULL);"
            "INSERT INTO bench_row VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET hits = 0;"
        )


def service_area() -> ServiceArea:
    return ServiceArea.objects.create(name="Bengaluru (bench)", area=AREA, is_active=True)


def city_riders(count: int) -> None:
    """`count` rider accounts and profiles spread over the city in two INSERT ... SELECTs.

    Like a city at lunchtime: 95% approved; 40% online, 10% on a delivery, 50% offline. The
    online ones get fresh positions from refresh_positions() right before they are searched.
    """
    user, rider = User._meta.db_table, Rider._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {user} (id, password, phone, name, is_customer, is_rider, is_staff,
                                is_active, is_superuser, date_joined)
            SELECT gen_random_uuid(), '!', '+9170' || lpad(n::text, 8, '0'), 'City rider ' || n,
                   false, true, false, true, false, now()
            FROM generate_series(1, %(count)s) AS n
            """,  # noqa: S608 - model tables
            {"count": count},
        )
        cursor.execute("SELECT setseed(0.7)")
        cursor.execute(
            f"""
            INSERT INTO {rider} (id, created_at, updated_at, user_id, vehicle_type,
                                 vehicle_number, approved, status, last_location,
                                 last_location_at, status_changed_at)
            SELECT gen_random_uuid(), now(), now(), account.id, 'motorcycle', '', random() < 0.95,
                   CASE WHEN roll < 0.4 THEN 'online' WHEN roll < 0.5 THEN 'on_delivery'
                        ELSE 'offline' END,
                   ST_SetSRID(ST_MakePoint(%(lng)s + (random() * 2 - 1) * %(half)s,
                                           %(lat)s + (random() * 2 - 1) * %(half)s), 4326)
                     ::geography,
                   now() - make_interval(secs => CASE WHEN roll < 0.5 THEN random() * 60
                                                      ELSE 3600 + random() * 86400 END),
                   now()
            FROM (SELECT id, random() AS roll FROM {user} WHERE phone LIKE '+9170%%') AS account
            """,  # noqa: S608 - model tables
            {"lat": CENTRE[0], "lng": CENTRE[1], "half": CITY_HALF_DEGREES},
        )
        cursor.execute(f"ANALYZE {user}")
        cursor.execute(f"ANALYZE {rider}")


def refresh_positions() -> None:
    """Online riders' fixes are from the last minute again (dispatch skips older than 2 min)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Rider._meta.db_table} SET last_location_at = now() - random() * "  # noqa: S608
            "interval '60 seconds' WHERE status IN ('online', 'on_delivery')"
        )
        cursor.execute(f"VACUUM ANALYZE {Rider._meta.db_table}")


def point_near(centre: tuple[float, float], max_metres: float, rng: random.Random):
    """A point within max_metres of centre, (lat, lng)."""
    import math

    angle, metres = rng.uniform(0, 2 * math.pi), rng.uniform(0, max_metres)
    dlat = metres * math.cos(angle) / METRES_PER_DEGREE
    dlng = metres * math.sin(angle) / (METRES_PER_DEGREE * math.cos(math.radians(centre[0])))
    return (centre[0] + dlat, centre[1] + dlng)


def cash_order(
    *, customer, area, pickup, drop, distance_m, status, code, now, rider=None
) -> tuple[Quote, Order]:
    """A cash-on-delivery quote (6,000 paise) and its order in `status`, unsaved, for
    bulk_create; `pickup` and `drop` are (lat, lng)."""
    quote = Quote(
        customer=customer,
        service_area=area,
        pickup_location=Point(pickup[1], pickup[0], srid=4326),
        pickup_address="Pickup",
        drop_location=Point(drop[1], drop[0], srid=4326),
        drop_address="Drop",
        package_description="Parcel",
        package_weight_grams=800,
        distance_m=distance_m,
        total_paise=6000,
        breakdown=[{"code": "base_fare", "label": "Base fare", "amount_paise": 6000}],
        expires_at=now + timedelta(minutes=10),
    )
    order_id = uuid.uuid4()
    order = Order(
        id=order_id,
        customer=customer,
        quote=quote,
        rider=rider,
        amount_paise=6000,
        payment_method=PaymentMethod.COD,
        status=status,
        delivery_code=code,
        delivery_code_hmac=delivery_code_hmac(order_id=order_id, code=code),
    )
    return quote, order


def trips(count: int, area: ServiceArea, rng: random.Random) -> list[Trip]:
    """`count` riders on a delivery (rider_assigned), each order with its own customer.

    The location benchmarks ping as these riders, so every ping takes a tracking seq and is
    broadcast to the order's group; the order benchmark books more orders as these customers.
    """
    now = timezone.now()
    customers, rider_users, riders, quotes, orders, result = [], [], [], [], [], []
    for index in range(count):
        customer = User(phone=f"+9181{index:08d}", name=f"Customer {index}", is_customer=True)
        rider_user = User(phone=f"+9182{index:08d}", name=f"Rider {index}", is_rider=True)
        for account in (customer, rider_user):
            account.set_unusable_password()
        lat, lng = point_near(CENTRE, 4000, rng)
        rider = Rider(
            user=rider_user,
            approved=True,
            status=Rider.Status.ON_DELIVERY,
            last_location=Point(lng, lat, srid=4326),
            last_location_at=now - timedelta(seconds=5),
            status_changed_at=now,
        )
        drop = point_near((lat, lng), 3000, rng)
        quote, order = cash_order(
            customer=customer,
            area=area,
            pickup=(lat, lng),
            drop=drop,
            distance_m=2000,
            status=OrderStatus.RIDER_ASSIGNED,
            code="4321",
            now=now,
            rider=rider,
        )
        customers.append(customer)
        rider_users.append(rider_user)
        riders.append(rider)
        quotes.append(quote)
        orders.append(order)
        result.append(Trip(rider_user, rider.pk, customer, order.id, lat, lng))
    with transaction.atomic():
        User.objects.bulk_create(customers + rider_users, batch_size=1000)
        Rider.objects.bulk_create(riders, batch_size=1000)
        Quote.objects.bulk_create(quotes, batch_size=1000)
        Order.objects.bulk_create(orders, batch_size=1000)
    return result
