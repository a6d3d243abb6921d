"""Writes for riders: the profile, approval, availability, and the locations their apps send.

Rows are locked in the project's lock order (core.locks): a rider accepting an offer holds the
order's lock before it locks the Rider. Nothing here locks more than the Rider row.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    models,
    transaction,
)
from django.utils import timezone
from prometheus_client import Counter, Histogram

from accounts.models import User
from core import realtime
from core.db import GroupCommit, database_call
from core.exceptions import ApiError, CommonError
from core.realtime import location_broadcast
from orders.models import CARRYING_STATUSES as CARRYING
from orders.models import ActorKind
from orders.state import Action
from riders.errors import RiderError
from riders.models import Rider, RiderLocation
from riders.serializers import location_input, location_output

logger = logging.getLogger(__name__)

FIXES_REFUSED = Counter(
    "rider_fixes_refused",
    "Rider location fixes refused, not stored and not relayed: too_fast (farther from the last "
    "fix than the speed limit allows) or too_frequent (under a second from another fix).",
    ["reason"],
)
for _reason in ("too_fast", "too_frequent"):
    FIXES_REFUSED.labels(_reason)  # shown as 0 before the first refusal

PING_SECONDS = Histogram(
    "rider_location_ping_seconds",
    "Time to take one rider location ping (HTTP or socket): checked, stored, and handed to the "
    "order's and the ops consoles' sockets.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# A phone's clock may run a little ahead of ours; more than this is a broken clock or a forgery.
LOCATION_CLOCK_SKEW = timedelta(seconds=30)
# Two honest fixes taken moments apart can still be this far apart: GPS wander.
LOCATION_JITTER_METRES = 50.0


# --- Profile and approval ----------------------------------------------------------------------


def rider_get_or_create(*, user: User) -> Rider:
    """The user's rider profile, created (unapproved, offline) on a rider's first visit.

    The gate for everything a rider does: anyone without the rider role is refused.
    """
    rider = _rider_get_or_create(user)
    rider.user = user  # the caller's instance: one query less, and edits to it are seen
    return rider


def rider_id_get_or_create(*, user: User):
    """rider_get_or_create's id alone, for a caller that keeps `user` (a socket's scope): the
    rider is not attached to it. Django caches a one-to-one pair on both sides, a reference
    cycle that a socket's user would keep until a full garbage collection, which the sockets
    role runs rarely (delivery/tests/test_socket_garbage.py)."""
    return _rider_get_or_create(user).pk


def _rider_get_or_create(user: User) -> Rider:
    if not user.is_rider:
        raise ApiError(RiderError.NOT_A_RIDER)
    rider, created = Rider.objects.get_or_create(user_id=user.pk)
    if created:
        logger.info("rider profile %s created for user %s", rider.pk, user.pk)
    return rider


def rider_profile_update(
    *,
    rider: Rider,
    name: str | None = None,
    vehicle_type: str | None = None,
    vehicle_number: str | None = None,
) -> Rider:
    """Changes what is given (None leaves a field alone). The name lives on the user.

    An approved rider's vehicle is what ops checked, so it can no longer be changed here.
    """
    with transaction.atomic():
        locked = Rider.objects.select_for_update().get(pk=rider.pk)
        vehicle = {"vehicle_type": vehicle_type, "vehicle_number": vehicle_number}
        changes = {
            field: value
            for field, value in vehicle.items()
            if value is not None and value != getattr(locked, field)
        }
        if changes and locked.approved:
            raise ApiError(RiderError.VEHICLE_LOCKED)
        if changes:
            for field, value in changes.items():
                setattr(locked, field, value)
            locked.save(update_fields=[*changes, "updated_at"])
        user = rider.user
        if name is not None and name != user.name:
            user.name = name
            user.save(update_fields=["name"])
    locked.user = user
    return locked


def rider_approve(*, rider: Rider, approved: bool = True) -> Rider:
    """Approves a rider (or withdraws approval, which also takes an online rider offline)."""
    with transaction.atomic():
        locked = Rider.objects.select_for_update().get(pk=rider.pk)
        if locked.approved == approved:
            return locked
        locked.approved = approved
        fields = ["approved", "updated_at"]
        if not approved and locked.status == Rider.Status.ONLINE:
            _set_status(locked, Rider.Status.OFFLINE)
            fields += ["status", "status_changed_at"]
            transaction.on_commit(lambda: riders_unavailable_notify(locked.pk))
        locked.save(update_fields=fields)
    logger.info("rider %s %s", locked.pk, "approved" if approved else "approval withdrawn")
    return locked


def rider_approve_by_phone(*, phone: str) -> tuple[Rider, bool]:
    """Approves the rider signed in with `phone`; returns it and whether it changed.

    The number must belong to someone who has signed in to the rider app (the rider role).
    """
    user = User.objects.filter(phone=phone).first()
    if user is None:
        raise ApiError(CommonError.NOT_FOUND, f"No account has the phone number {phone}.")
    if not user.is_rider:
        raise ApiError(
            RiderError.NOT_A_RIDER,
            f"{phone} has an account but not as a rider; they must sign in to the rider app first.",
        )
    rider = rider_get_or_create(user=user)
    was_approved = rider.approved
    rider = rider_approve(rider=rider)
    return rider, not was_approved


# --- Availability ------------------------------------------------------------------------------


def _set_status(rider: Rider, new_status: str) -> None:
    """Every status change of a rider's own goes through here (the admin's through
    rider_status_set_by_ops); the ops consoles hear of it after commit."""
    rider.status = new_status
    rider.status_changed_at = timezone.now()
    _tell_ops(rider)


def _tell_ops(rider: Rider) -> None:
    realtime.send_on_commit(realtime.OPS_GROUP, realtime.ops_rider_status_message(rider))


def rider_go_online(*, rider: Rider) -> Rider:
    """Makes an approved rider available for offers. Locks the Rider row.

    Idempotent: an online rider stays online, and a rider on a delivery stays on it. After
    commit, a rider who came online is matched with the few oldest orders searching nearby,
    in a task (delivery.services.dispatch.dispatch_rematch_request).
    """
    with transaction.atomic():
        locked = Rider.objects.select_for_update().get(pk=rider.pk)
        if locked.status == Rider.Status.SUSPENDED:
            raise ApiError(RiderError.SUSPENDED)
        if not locked.approved:
            raise ApiError(RiderError.NOT_APPROVED)
        if locked.status == Rider.Status.OFFLINE:
            _set_status(locked, Rider.Status.ONLINE)
            locked.save(update_fields=["status", "status_changed_at", "updated_at"])
            # Orders that found nobody may be waiting near this rider: match them again.
            transaction.on_commit(lambda: _rematch(locked.pk))
    locked.user = rider.user
    return locked


# --- Hooks: what other apps do when riders come free or become unavailable -------------------

_free_hooks: list[Callable] = []
_unavailable_hooks: list[Callable] = []


def on_rider_free(hook: Callable) -> None:
    """`hook(rider_id=…)` runs after commit when a rider comes online or off a delivery
    (delivery: match them with orders waiting nearby)."""
    _free_hooks.append(hook)


def on_riders_unavailable(hook: Callable) -> None:
    """`hook(rider_id=…)` runs after commit when a rider (None: any number of riders) went
    offline, was suspended or lost approval (delivery: their pending offers go back)."""
    _unavailable_hooks.append(hook)


def _rematch(rider_id) -> None:
    for hook in _free_hooks:
        hook(rider_id=rider_id)


def riders_unavailable_notify(rider_id=None) -> None:
    """After commit: tells the on_riders_unavailable hooks (one rider's, or None: everyone's)."""
    for hook in _unavailable_hooks:
        hook(rider_id=rider_id)


def rider_go_offline(*, rider: Rider) -> Rider:
    """Stops offers to the rider. Locks the Rider row; refused in the middle of a delivery.

    Idempotent for an offline rider; a suspended rider stays suspended. The rider's pending
    offers are withdrawn after commit, so their orders move on to the next rider at once.
    """
    with transaction.atomic():
        locked = Rider.objects.select_for_update().get(pk=rider.pk)
        if locked.status == Rider.Status.ON_DELIVERY:
            raise ApiError(RiderError.ON_DELIVERY)
        if locked.status == Rider.Status.ONLINE:
            _set_status(locked, Rider.Status.OFFLINE)
            locked.save(update_fields=["status", "status_changed_at", "updated_at"])
            transaction.on_commit(lambda: riders_unavailable_notify(locked.pk))
    locked.user = rider.user
    return locked


def riders_set_offline_when_silent_since(cutoff) -> int:
    """Sets offline every online rider with no fix since `cutoff` who also came online before
    it; returns how many. The ops consoles hear of each after commit.

    Silent means no location since then (none at all since going online: updated_at); a rider
    back after a day away has a day-old fix, so the time since going online counts too. The
    rows are locked with the WHERE clause re-checked by PostgreSQL on each one, so a rider
    whose ping lands meanwhile stays online.
    """
    no_recent_fix = models.Q(last_location_at__lt=cutoff) | models.Q(
        last_location_at__isnull=True, updated_at__lt=cutoff
    )
    not_just_online = models.Q(status_changed_at__lt=cutoff) | models.Q(
        status_changed_at__isnull=True
    )
    with transaction.atomic():
        idle = list(
            Rider.objects.select_for_update()
            .filter(no_recent_fix, not_just_online, status=Rider.Status.ONLINE)
            .order_by("pk")
        )
        now = timezone.now()
        Rider.objects.filter(pk__in=[rider.pk for rider in idle]).update(
            status=Rider.Status.OFFLINE, status_changed_at=now, updated_at=now
        )
        for rider in idle:
            rider.status, rider.status_changed_at = Rider.Status.OFFLINE, now
            _tell_ops(rider)
    return len(idle)


def rider_status_set_by_ops(*, rider: Rider, new_status: str) -> None:
    """Ops changed a rider's status in the admin (suspending, reinstating): time it, and take
    back the offers of a rider who is no longer online."""
    rider.status_changed_at = timezone.now()
    _tell_ops(rider)
    if new_status != Rider.Status.ONLINE:
        transaction.on_commit(lambda: riders_unavailable_notify(rider.pk))


# --- Deliveries: called by orders.state.order_transition, under the order's lock ---------------


def rider_take_delivery(*, rider_id) -> Rider:
    """Puts an online, approved, free rider on a delivery; RiderError.UNAVAILABLE for anyone else.

    Locks the Rider row; the caller holds the order's lock already (the project's lock order).
    """
    locked = Rider.objects.select_for_update(of=("self",)).select_related("user").get(pk=rider_id)
    if locked.status != Rider.Status.ONLINE or not locked.approved or not locked.user.is_active:
        raise ApiError(RiderError.UNAVAILABLE)
    _set_status(locked, Rider.Status.ON_DELIVERY)
    locked.save(update_fields=["status", "status_changed_at", "updated_at"])
    return locked


def rider_finish_delivery(*, rider_id) -> None:
    """The order left the rider's hands: a rider on a delivery is online (free) again, and is
    matched with waiting orders after commit. A rider suspended meanwhile stays suspended."""
    locked = Rider.objects.select_for_update().get(pk=rider_id)
    if locked.status == Rider.Status.ON_DELIVERY:
        _set_status(locked, Rider.Status.ONLINE)
        locked.save(update_fields=["status", "status_changed_at", "updated_at"])
        transaction.on_commit(lambda: _rematch(rider_id))


def rider_follows_transition(move) -> None:
    """orders.state hook, inside the order's lock: the rider an ASSIGN gives the order is taken
    (online, approved and free, or RiderError.UNAVAILABLE undoes the move); a rider the order leaves
    (released, delivered, failed, cancelled) is free again, and told over their socket when
    someone else took the order from them."""
    if move.action == Action.ASSIGN:
        move.order.rider = rider_take_delivery(rider_id=move.order.rider_id)
        return
    if move.from_rider_id is None or move.to_status in CARRYING:
        return
    rider_finish_delivery(rider_id=move.from_rider_id)
    if move.actor.kind != ActorKind.RIDER:  # unassigned or cancelled under the rider
        message = {"type": "unassigned", "order_id": str(move.order.pk), "status": move.to_status}
        move.messages.append((realtime.rider_group(move.from_rider_id), message))


# --- Locations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocationReceipt:
    rider_id: UUID
    recorded_at: datetime
    # False when the fix is older than the rider's latest one: kept in the trail only.
    is_latest: bool
    lat: float = 0.0
    lng: float = 0.0
    # The order the rider is carrying, and the tracking seq this fix took on it; None when the
    # rider carries nothing or the fix is not the latest (nobody is told of it).
    order_id: UUID | None = None
    seq: int | None = None


# The fix is stored by one call to a database function (riders/migrations/0004_...): it checks
# the role and the speed, moves the latest position only forward in time, appends the fix to
# the trail and, for a rider carrying an order, takes the order's next tracking seq. One round
# trip and one transaction per ping; it locks the Order row before the Rider row, as the rest
# of the project does.
_LOCATION_PING_SQL = """
SELECT rider_id, outcome, order_id, seq FROM rider_location_ping(
    %(user_id)s, %(lat)s, %(lng)s, %(recorded_at)s, %(now)s, %(max_speed_mps)s, %(jitter_m)s,
    %(carrying)s, %(accuracy_m)s, %(heading)s, %(speed_mps)s, %(min_interval)s
)
"""
# The same for a batch of pings (0006_...): one statement and one transaction for them all.
_LOCATION_PINGS_SQL = """
SELECT idx, rider_id, outcome, order_id, seq FROM rider_location_pings(
    %(user_id)s::uuid[], %(lat)s::float8[], %(lng)s::float8[], %(recorded_at)s::timestamptz[],
    %(now)s::timestamptz[], %(accuracy_m)s::float8[], %(heading)s::float8[],
    %(speed_mps)s::float8[], %(max_speed_mps)s, %(jitter_m)s, %(carrying)s, %(min_interval)s
)
"""
_PER_PING = ("user_id", "lat", "lng", "recorded_at", "now", "accuracy_m", "heading", "speed_mps")
_CARRYING_VALUES = [str(status) for status in CARRYING]


def rider_location_record(**fix) -> LocationReceipt:
    """Stores one fix from a rider's app: `user_id`, `lat`, `lng`, `recorded_at`, and optionally
    `accuracy_m`, `heading` and `speed_mps` (_ping_params). From async code, the HTTP view and
    the rider socket, call rider_location_record_async: the rider pings' hot path.

    Refuses fixes that are stale, from the future, or too far from the previous fix for the
    time between them. A fix older than the latest one joins the trail without moving
    Rider.last_location. Takes `user_id` rather than a user so that the HTTP endpoint need not
    load the user first: the database function checks the role itself. For a rider on a
    delivery, the fix takes its place in the order's tracking sequence; the caller broadcasts it
    (core.realtime.location_broadcast).
    """
    params = _ping_params(**fix)
    row = _location_ping(params)
    if row is None:
        _location_refusal(user_id=params["user_id"])  # raises, or creates the missing profile
        row = _location_ping(params)
    return _receipt(row, params)


async def rider_location_ping(*, user_id, data: dict) -> dict:
    """A rider's ping, on whichever transport it came (the location view, the rider socket):
    validated (ValidationError with DRF's per-field messages), stored, sent on to the order's
    sockets and the ops consoles once committed; returns the answer's fields."""
    with PING_SECONDS.time():
        fields = location_input(data)
        receipt = await rider_location_record_async(user_id=user_id, **fields)
        await location_broadcast(receipt)
        return location_output(receipt)


async def rider_location_record_async(**fix) -> LocationReceipt:
    """rider_location_record for the location view and the rider socket.

    The fix is stored together with the others this process's event loop receives meanwhile
    (core.db.GroupCommit): one statement and one commit for the batch instead of one per fix,
    and one thread hop. The rules, the locks and the answer are those of one fix alone. A fix
    whose account has no row in the batch (not a rider, or no profile yet) is retried alone,
    which finds out why.
    """
    params = _ping_params(**fix)
    row = await _ping_batches(params)
    if row is None:
        return await _record_alone(**fix)
    return _receipt(row, params)


def _ping_params(
    *,
    user_id: UUID,
    lat: float,
    lng: float,
    recorded_at: datetime,
    accuracy_m: float | None = None,
    heading: float | None = None,
    speed_mps: float | None = None,
) -> dict:
    """The database function's arguments for one fix; refuses a stale or future one first."""
    now = timezone.now()
    if recorded_at < now - timedelta(seconds=settings.RIDER_LOCATION_MAX_AGE_SECONDS):
        raise ApiError(RiderError.LOCATION_STALE)
    if recorded_at > now + LOCATION_CLOCK_SKEW:
        raise ApiError(RiderError.LOCATION_FROM_FUTURE)
    return {
        "user_id": user_id,
        "lat": lat,
        "lng": lng,
        "recorded_at": recorded_at,
        "now": now,
        "max_speed_mps": settings.RIDER_MAX_SPEED_KMH / 3.6,
        "jitter_m": LOCATION_JITTER_METRES,
        "carrying": _CARRYING_VALUES,
        "min_interval": settings.RIDER_MIN_FIX_SECONDS,
        "accuracy_m": accuracy_m,
        "heading": heading,
        "speed_mps": speed_mps,
    }


def _receipt(row, params: dict) -> LocationReceipt:
    if row is None or row[1] == "too_fast":
        FIXES_REFUSED.labels("too_fast").inc()
        raise ApiError(RiderError.LOCATION_IMPOSSIBLE_SPEED)
    if row[1] == "too_frequent":
        FIXES_REFUSED.labels("too_frequent").inc()
        raise ApiError(RiderError.LOCATION_TOO_FREQUENT, retry_after=1)
    rider_id, outcome, order_id, seq = row
    return LocationReceipt(
        rider_id=rider_id,
        recorded_at=params["recorded_at"],
        is_latest=outcome == "latest",
        lat=params["lat"],
        lng=params["lng"],
        order_id=order_id,
        seq=seq,
    )


def _location_ping(params: dict):
    # One statement: in autocommit it is its own transaction, without BEGIN and COMMIT trips.
    with connection.cursor() as cursor:
        cursor.execute(_LOCATION_PING_SQL, params)
        return cursor.fetchone()


def _location_pings(batch: list[dict]) -> list:
    """Stores a batch of fixes in one statement; for each, in order, its row as _location_ping
    gives it (None: no active rider with a profile), or the error it met.

    The batch goes in user order, so that two batches meeting in PostgreSQL lock the same
    riders (and their orders) in the same order. If the statement fails with an error of its
    own (a constraint, a deadlock, a row locked elsewhere past the lock timeout, a value it
    cannot take), the fixes are stored one by one, so that one bad fix fails alone; when the
    database cannot be reached, the error is everyone's.
    """
    order = sorted(range(len(batch)), key=lambda index: str(batch[index]["user_id"]))
    arrays = {name: [batch[index][name] for index in order] for name in _PER_PING}
    # The view passes the token's user id as text, the socket a UUID: one type to a list.
    arrays["user_id"] = [str(user_id) for user_id in arrays["user_id"]]
    first = batch[0]
    shared = {
        name: first[name] for name in ("max_speed_mps", "jitter_m", "carrying", "min_interval")
    }
    try:
        with connection.cursor() as cursor:
            cursor.execute(_LOCATION_PINGS_SQL, {**arrays, **shared})
            rows = {idx: tuple(row) for idx, *row in cursor.fetchall()}
    except DatabaseError as error:
        if len(batch) == 1 or not _worth_trying_alone(error):
            raise
        return [_location_ping_alone(params) for params in batch]
    results = [None] * len(batch)
    for idx, index in enumerate(order, start=1):
        results[index] = rows.get(idx)
    return results


def _worth_trying_alone(error: DatabaseError) -> bool:
    """Whether storing each fix of a failed batch alone can help: not when the database
    cannot be reached (class 08, or no answer at all) or cancelled the statement (class 57, a
    timeout); yes when it refused the statement (a constraint, a deadlock, a bad value) or
    the driver could not send it."""
    if isinstance(error, InterfaceError):
        return False
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    if sqlstate is None:
        return not isinstance(error, OperationalError)
    return not sqlstate.startswith(("08", "57"))


def _location_ping_alone(params: dict):
    """One fix of a failed batch, in a batch of its own (with the batch's lock timeout)."""
    try:
        return _location_pings([params])[0]
    except DatabaseError as error:
        return error


# One batch out at a time per worker: under load the fixes wait for it and go out together in
# bigger batches, cheaper for PostgreSQL and sooner answered than with two half-size batches
# (docs/performance.md). A row locked elsewhere holds a batch up for at most the function's
# lock timeout (riders/migrations/0006_...).
_ping_batches = GroupCommit(_location_pings)
_record_alone = database_call(rider_location_record)


def _location_refusal(*, user_id: UUID) -> None:
    """Why the location UPDATE matched no row; only reached when a fix was not stored.

    Raises the error for the client, except for a rider without a profile yet: that profile is
    created, and the caller tries once more.
    """
    user = User.objects.filter(pk=user_id).first()
    if user is None or not user.is_active:
        raise ApiError(RiderError.ACCOUNT_INACTIVE)
    rider = rider_get_or_create(user=user)  # RiderError.NOT_A_RIDER for everyone else
    if rider.last_location is not None:
        raise ApiError(RiderError.LOCATION_IMPOSSIBLE_SPEED)


def rider_location_purge(
    *, older_than: timedelta | None = None, batch_size: int = 5000, max_batches: int = 1000
) -> int:
    """Deletes trail points older than RIDER_LOCATION_RETENTION_HOURS; returns how many.

    Each batch is one short DELETE of the oldest ids, so the table is never locked for long;
    `max_batches` bounds one run (the hourly task picks up any rest next time).
    """
    older_than = older_than or timedelta(hours=settings.RIDER_LOCATION_RETENTION_HOURS)
    cutoff = timezone.now() - older_than
    deleted = 0
    for _ in range(max_batches):
        oldest = RiderLocation.objects.filter(recorded_at__lt=cutoff).order_by("pk")
        count, _ = RiderLocation.objects.filter(pk__in=oldest.values("pk")[:batch_size]).delete()
        deleted += count
        if count < batch_size:
            break
    else:
        logger.warning("rider_location_purge stopped after %d batches; more remain", max_batches)
    return deleted  # the hourly task logs the count (core.tasks.purge_expired_records)
