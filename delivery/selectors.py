"""Reads for dispatch and tracking: the riders nearest a pickup, a rider's live offers, orders
left waiting, who may watch an order and where its rider is."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.contrib.gis.db.models.functions import Distance
from django.contrib.gis.geos import Point
from django.contrib.gis.measure import D
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from accounts.models import User
from delivery.models import DispatchRound, Offer
from orders.models import CARRYING_STATUSES, Order, OrderStatus
from riders.models import Rider


@dataclass(frozen=True)
class Candidate:
    rider_id: UUID
    distance_m: int


# The k nearest eligible riders by the GiST index on riders_rider.last_location: `<->` in the
# ORDER BY is what lets PostgreSQL walk the index outward from the pickup (a KNN scan) instead of
# computing every distance and sorting. ST_DWithin bounds the walk. Django's Distance annotation
# orders by ST_Distance, which cannot use the index, hence raw SQL.
_NEAREST_SQL = f"""
SELECT rider.id, ST_Distance(rider.last_location, %(pickup)s::geography) AS distance_m
FROM {Rider._meta.db_table} AS rider
JOIN {User._meta.db_table} AS account ON account.id = rider.user_id
WHERE rider.approved
  AND rider.status = %(online)s
  AND account.is_active AND account.is_rider
  AND rider.last_location_at >= %(fresh_since)s
  AND rider.user_id IS DISTINCT FROM (
    SELECT ordered.customer_id FROM {Order._meta.db_table} AS ordered
    WHERE ordered.id = %(order_id)s
  )
  AND ST_DWithin(rider.last_location, %(pickup)s::geography, %(radius_m)s)
  AND NOT EXISTS (
    SELECT 1 FROM {Offer._meta.db_table} AS offered
    WHERE offered.order_id = %(order_id)s AND offered.rider_id = rider.id
  )
  AND (
    SELECT count(*) FROM {Offer._meta.db_table} AS live
    WHERE live.rider_id = rider.id AND live.status = %(pending)s AND live.expires_at > %(now)s
  ) < %(max_live)s
ORDER BY rider.last_location <-> %(pickup)s::geography
LIMIT %(limit)s
"""  # noqa: S608 - the only interpolations are the models' table names; values are bound


# The planner underestimates how many riders pass these filters, so left to itself it takes every
# rider inside the radius from the GiST index (a bitmap scan) and sorts them all: 6-8 ms among
# 100,000 riders, against about 0.5 ms for the KNN walk, which stops after `limit` riders (and
# is bounded by the same radius through the index condition). And once the KNN plan is chosen,
# its cost estimate is high enough for JIT compilation, which adds about 10 ms to every
# query. Both are switched off for this query only, by SET LOCALs sent in the same message as
# the query: one round trip. Several statements in one message are one transaction, which
# takes the SET LOCALs with it; inside a caller's transaction they are reset in that message
# too (docs/performance.md has the figures).
_KNN_PLANNER_SQL = "SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off; "
_KNN_PLANNER_RESET_SQL = "; RESET enable_bitmapscan; RESET jit"


def _knn_rows(sql: str, params: dict) -> list[tuple]:
    """Runs `sql` (one SELECT) with the planner settings above, in one round trip.

    Django's psycopg cursors bind parameters on the client, so the settings, the query and
    the reset travel as one simple-query message."""
    statement = _KNN_PLANNER_SQL + sql.strip()
    if connection.in_atomic_block:
        statement += _KNN_PLANNER_RESET_SQL
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        while cursor.description is None and cursor.nextset():
            pass  # past the SETs' results to the query's
        return cursor.fetchall()


def _nearest_params(*, order_id, pickup: Point, radius_m: int, limit: int, now: datetime) -> dict:
    return {
        "pickup": pickup.ewkt,
        "online": Rider.Status.ONLINE,
        "fresh_since": now - timedelta(seconds=settings.RIDER_LOCATION_MAX_AGE_SECONDS),
        "radius_m": radius_m,
        "order_id": order_id,
        "pending": Offer.Status.PENDING,
        "now": now,
        "max_live": settings.DISPATCH_MAX_LIVE_OFFERS_PER_RIDER,
        "limit": limit,
    }


def riders_nearest_eligible(
    *, order_id, pickup: Point, radius_m: int, limit: int, now: datetime | None = None
) -> list[Candidate]:
    """Approved, online, freshly located riders within radius_m of pickup, nearest first.

    Skips riders already offered this order, riders holding their maximum of live offers,
    and the order's own customer (a phone that is both never carries its own order).
    """
    params = _nearest_params(
        order_id=order_id, pickup=pickup, radius_m=radius_m, limit=limit, now=now or timezone.now()
    )
    rows = _knn_rows(_NEAREST_SQL, params)
    return [Candidate(rider_id, round(distance)) for rider_id, distance in rows]


def riders_nearest_eligible_plan(*, order_id, pickup: Point, radius_m: int, limit: int) -> str:
    """EXPLAIN of riders_nearest_eligible: tests check it walks the GiST index (KNN)."""
    params = _nearest_params(
        order_id=order_id, pickup=pickup, radius_m=radius_m, limit=limit, now=timezone.now()
    )
    rows = _knn_rows("EXPLAIN " + _NEAREST_SQL, params)
    return "\n".join(row[0] for row in rows)


def offers_live_for_rider(*, rider: Rider) -> QuerySet[Offer]:
    """The rider's pending, unexpired offers, soonest to expire first, with their orders' trips.

    An order cancelled while its offers were out leaves them pending until they expire; they
    are not shown (accepting one would be refused anyway).
    """
    return (
        Offer.objects.filter(
            rider=rider,
            status=Offer.Status.PENDING,
            expires_at__gt=timezone.now(),
            order__status=OrderStatus.SEARCHING_RIDER,
        )
        .select_related("order__quote")
        .order_by("expires_at")
    )


def orders_waiting_for_dispatch(*, limit: int = 200) -> list[UUID]:
    """Orders searching for a rider with no live offer whose last round is old enough to retry.

    The sweep's safety net: covers a lost task, a round that found nobody, and offers that ran
    out without their expiry task. Oldest orders first.
    """
    now = timezone.now()
    live_offer = Offer.objects.filter(
        order=OuterRef("pk"), status=Offer.Status.PENDING, expires_at__gt=now
    )
    recent_round = DispatchRound.objects.filter(
        order=OuterRef("pk"),
        created_at__gt=now - timedelta(seconds=settings.DISPATCH_RETRY_SECONDS),
    )
    return list(
        Order.objects.filter(status=OrderStatus.SEARCHING_RIDER)
        .filter(~Exists(live_offer), ~Exists(recent_round))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def orders_searching_near(*, point: Point, limit: int) -> list[UUID]:
    """The oldest orders searching for a rider whose pickup is within the widest radius of point."""
    return list(
        Order.objects.filter(
            status=OrderStatus.SEARCHING_RIDER,
            quote__pickup_location__dwithin=(point, D(m=settings.DISPATCH_MAX_RADIUS_M)),
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def riders_assignable_near(*, point: Point, customer_id=None) -> QuerySet[Rider]:
    """Riders ops may assign by hand to an order picked up at `point`, nearest first; never
    the order's own customer (`customer_id`).

    Online (so free: a rider on a delivery is on_delivery), approved, with an active account,
    last seen within DISPATCH_MAX_RADIUS_M; annotated with `distance`. Unlike dispatch, an old
    position does not rule a rider out: ops see how old it is and decide.
    """
    return (
        Rider.objects.filter(
            status=Rider.Status.ONLINE,
            approved=True,
            user__is_active=True,
            last_location__dwithin=(point, D(m=settings.DISPATCH_MAX_RADIUS_M)),
        )
        .exclude(user_id=customer_id)
        .select_related("user")
        .annotate(distance=Distance("last_location", point))
        .order_by("distance")
    )


# Following an order live follows its rider: staff need to see riders too, as in the ops
# console (finance sees every order, but not where riders are).
WATCH_PERMISSIONS = ("orders.view_order", "riders.view_rider")


def order_for_watcher(*, user: User, order_id, with_quote: bool = False) -> Order | None:
    """The order if `user` may watch it: its customer, its current rider, or ops who see all
    orders and riders. None for anyone else, and for an order that does not exist: the two
    look alike.

    The quote is read only `with_quote` (the snapshot's ETA needs it; the sockets, which read
    the order at each connect and each watcher's rights every minute, do not): Django caches a
    one-to-one pair on both sides, a reference cycle that outlives the request until a full
    garbage collection, which the sockets role runs rarely (delivery/tests/test_socket_garbage).
    """
    related = ("rider", "quote") if with_quote else ("rider",)
    order = Order.objects.select_related(*related).filter(pk=order_id).first()
    if order is None or not user.is_authenticated:
        return None
    if order.customer_id == user.pk or (user.is_staff and user.has_perms(WATCH_PERMISSIONS)):
        return order
    if order.rider is not None and order.rider.user_id == user.pk:
        return order
    return None


@dataclass(frozen=True)
class Tracking:
    order: Order
    rider_point: Point | None
    rider_seen_at: datetime | None
    eta_seconds: int | None


def order_tracking(order: Order) -> Tracking:
    """Where the order's rider is and a rough time to the drop, while the rider carries it.

    The ETA is straight-line distance at DELIVERY_ETA_SPEED_KMH: through the pickup while the
    package is not yet picked up, straight to the drop after.
    """
    rider = order.rider
    if order.status not in CARRYING_STATUSES or rider is None or rider.last_location is None:
        return Tracking(order=order, rider_point=None, rider_seen_at=None, eta_seconds=None)
    quote = order.quote
    here = rider.last_location
    if order.status in {OrderStatus.RIDER_ASSIGNED, OrderStatus.AT_PICKUP}:
        metres = _metres(here, quote.pickup_location) + quote.distance_m
    else:
        metres = _metres(here, quote.drop_location)
    eta = round(metres / (settings.DELIVERY_ETA_SPEED_KMH / 3.6))
    return Tracking(
        order=order, rider_point=here, rider_seen_at=rider.last_location_at, eta_seconds=eta
    )


def _metres(a: Point, b: Point) -> float:
    """Geodesic distance on the spheroid, as PostGIS measures geography."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ST_Distance(%s::geography, %s::geography)", [a.ewkt, b.ewkt])
        return cursor.fetchone()[0]
