"""PostgreSQL as configured for production: PostGIS, the connection pool, timeouts, and tasks
whose writes are one transaction.

The pool and timeout tests load the production settings in a fresh process (as a gunicorn
worker would) against the tests' own database, or against a port that accepts and never
answers (a hung database).
"""

import json
import math

import pytest
from django.db import connection, connections

from core.tests.production_env import production_env
from delivery.models import DispatchRound, Offer
from delivery.tasks import dispatch_order
from delivery.tests.support import rider_near_pickup, searching_order
from devstack.commands import run_python
from devstack.env import database_url
from devstack.ports import SilentListener

# --- PostGIS -----------------------------------------------------------------------------------


def _haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    radius = 6_371_008.8  # mean Earth radius, metres
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(a))


@pytest.mark.checklist("P1.18", "P4.1")
@pytest.mark.django_db
def test_the_migrated_database_has_postgis_and_measures_distances_with_it():
    # MG Road to Koramangala (orders.tests.factories PICKUP and DROP)
    pickup, drop = (12.9716, 77.5946), (12.9352, 77.6245)

    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
        (version,) = cursor.fetchone()
        cursor.execute(
            "SELECT ST_Distance(ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography,"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography)",
            [pickup[1], pickup[0], drop[1], drop[0]],
        )
        (metres,) = cursor.fetchone()

    assert connection.vendor == "postgresql"
    assert connection.ops.spatial_version >= (3, 0), version
    assert int(version.split(".")[0]) >= 3
    # PostGIS measures on the spheroid; the sphere differs by well under 1 %
    assert metres == pytest.approx(_haversine_m(*pickup, *drop), rel=0.01)


# --- Connection pool ---------------------------------------------------------------------------

# Ten requests, each in a new thread as under ASGI, each ending as Django ends a request
# (close_old_connections on request_finished); prints the PostgreSQL backend each one used.
_TEN_REQUESTS_IN_NEW_THREADS = """
import json, threading, django
django.setup()
from django.db import close_old_connections, connection

backends = []

def request():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backends.append(cursor.fetchone()[0])
    close_old_connections()

for _ in range(10):
    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
options = connection.settings_dict["OPTIONS"]
print(json.dumps({
    "backends": backends,
    "pool": options.get("pool"),
    "conn_max_age": connection.settings_dict["CONN_MAX_AGE"],
}))
"""


@pytest.mark.checklist("P1.17", "P4.4")
def test_production_reuses_pooled_connections_across_request_threads(django_db_setup):
    # when ten requests run one after another, each in a thread of its own (as under ASGI)
    pooled = run_python(_TEN_REQUESTS_IN_NEW_THREADS, env=production_env())
    persistent = run_python(
        _TEN_REQUESTS_IN_NEW_THREADS, env=production_env(DB_POOL="0", CONN_MAX_AGE=None)
    )

    # then the default (psycopg pool) served them all from the pool's few connections (its
    # first one opens in the background: the first request may have opened a second)
    assert pooled.returncode == 0, pooled.stderr[-3000:]
    result = json.loads(pooled.stdout.strip().splitlines()[-1])
    assert result["pool"] == {"min_size": 1, "max_size": 10, "timeout": 5.0}
    assert result["conn_max_age"] == 0
    assert len(result["backends"]) == 10
    assert len(set(result["backends"])) <= 2, result["backends"]

    # while Django's persistent connections (DB_POOL=0, CONN_MAX_AGE=600) opened one per thread
    assert persistent.returncode == 0, persistent.stderr[-3000:]
    result = json.loads(persistent.stdout.strip().splitlines()[-1])
    assert (result["pool"], result["conn_max_age"]) == (None, 600)
    assert len(set(result["backends"])) == 10, result["backends"]


# --- Timeouts ----------------------------------------------------------------------------------

_TIMED_QUERY = """
import json, sys, time, django
django.setup()
from django.db import connection
started = time.monotonic()
try:
    with connection.cursor() as cursor:
        cursor.execute(sys.argv[1])
    outcome = "ok"
except Exception as error:
    outcome = f"{type(error).__module__}.{type(error).__name__}: {error}"
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started}))
"""


def _timed_query(sql: str, env: dict[str, str]) -> dict:
    result = run_python(_TIMED_QUERY, sql, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.checklist("P4.5")
def test_a_runaway_query_is_cancelled_by_the_statement_timeout(django_db_setup):
    # given production settings with a short statement timeout
    env = production_env(DB_STATEMENT_TIMEOUT_MS="500")

    # when a query would run for 10 s
    timed = _timed_query("SELECT pg_sleep(10)", env)

    # then PostgreSQL cancels it after the timeout
    assert "canceling statement due to statement timeout" in timed["outcome"], timed
    assert timed["seconds"] < 3, timed


@pytest.mark.checklist("P4.5")
@pytest.mark.parametrize(
    ("changes", "bound"),
    [
        # without the pool: psycopg's connect_timeout ends the attempt
        pytest.param({"DB_POOL": "0", "DB_CONNECT_TIMEOUT": "2"}, 2, id="connect-timeout"),
        # with the pool: a request waits DB_POOL_TIMEOUT for a connection, then fails
        pytest.param({"DB_POOL_TIMEOUT": "2"}, 2, id="pool-timeout"),
    ],
)
def test_a_database_that_accepts_but_never_answers_fails_the_query_in_bounded_time(changes, bound):
    # given production settings pointed at a "database" that accepts and never says a word
    listener = SilentListener()
    try:
        hung = database_url(connections["default"].settings_dict, port=listener.port)
        env = production_env(DATABASE_URL=hung, **changes)

        # when a query is made
        timed = _timed_query("SELECT 1", env)
    finally:
        listener.close()

    # then it fails within its bound instead of hanging the worker
    assert listener.accepted, "the settings never tried the hung database"
    assert timed["outcome"] != "ok", timed
    assert bound - 0.5 <= timed["seconds"] < bound + 3, timed


# --- Transactions in tasks ---------------------------------------------------------------------


@pytest.mark.checklist("P4.12")
@pytest.mark.django_db
def test_a_dispatch_task_failing_after_its_writes_leaves_nothing_behind(
    monkeypatch, django_capture_on_commit_callbacks
):
    # given an order searching for a rider, with one rider nearby
    rider_near_pickup(300)
    order = searching_order()

    # when the task fails after writing its round and its offers, before it commits
    def fail(offer):
        raise RuntimeError("worker lost mid-task")

    monkeypatch.setattr("delivery.services.dispatch.offer_message", fail)
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError, match="worker lost mid-task"),
    ):
        dispatch_order(str(order.pk))

    # then its writes were rolled back together and nothing was announced to the rider
    assert not DispatchRound.objects.filter(order=order).exists()
    assert not Offer.objects.filter(order=order).exists()
    assert callbacks == []

    # and the task run again (as Celery redelivers it) makes exactly one round and one offer
    monkeypatch.undo()
    dispatch_order(str(order.pk))
    assert DispatchRound.objects.filter(order=order).count() == 1
    assert Offer.objects.filter(order=order).count() == 1
