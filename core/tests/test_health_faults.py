"""A real gunicorn answers /health/ (and keeps serving) quickly when PostgreSQL or Redis is down."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

import devstack.env
from devstack.env import base_env, local_production_env
from devstack.ports import SilentListener, free_port
from devstack.redis import RedisServer
from devstack.web import Server, start_server

# django_db makes pytest-django create the test database the servers are pointed at.
pytestmark = [pytest.mark.slow, pytest.mark.django_db]

# Generous bound: the checks give up after HEALTH_CHECK_TIMEOUT_SECONDS (3 s by default).
FAST_SECONDS = 5.0


def timed_get(server: Server, path: str) -> tuple:
    started = time.monotonic()
    response = server.get(path, timeout=30)
    return response, time.monotonic() - started


def probe_in_bursts(server: Server, *, bursts: int = 3, size: int = 10) -> list[tuple]:
    """Bursts of concurrent probes, as several load balancers and orchestrators would send."""
    results = []
    with ThreadPoolExecutor(max_workers=size) as pool:
        for _ in range(bursts):
            results += pool.map(lambda _: timed_get(server, "/health/"), range(size))
    return results


@pytest.fixture(scope="module")
def database_url(django_db_setup) -> str:
    """The migrated test database, which the servers read through their own connections."""
    return devstack.env.database_url(connections["default"].settings_dict)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("health-faults")


@pytest.fixture(scope="module")
def redis_server(work_dir):
    redis = RedisServer(work_dir / "redis")
    redis.start()
    yield redis
    redis.kill()


@pytest.fixture
def silent_listener():
    listener = SilentListener()
    yield listener
    listener.close()


@pytest.fixture
def start(work_dir):
    """Starts servers for one test and stops every one of them afterwards."""
    started: list[Server] = []

    def _start(env: dict[str, str], **kwargs) -> Server:
        server = start_server(env, work_dir, **kwargs)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


# --- PostgreSQL down ---------------------------------------------------------------------------


@pytest.mark.checklist("P4.5", "P6.9", "P6.10", "P6.12", "P9.1", "P11.18")
def test_health_is_503_fast_when_nothing_listens_on_the_database_port(
    start, redis_server, database_url
):
    # given a database address where the connection is refused
    dead_database = devstack.env.database_url(
        connections["default"].settings_dict, port=free_port()
    )
    server = start(
        base_env(DJANGO_ENV="test", DATABASE_URL=dead_database, REDIS_URL=redis_server.url)
    )

    # when
    response, elapsed = timed_get(server, "/health/")

    # then
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] in {"unavailable", "timeout"}
    assert body["checks"]["cache"] == "ok"
    assert elapsed < FAST_SECONDS
    assert response.headers["Cache-Control"] == "no-store"

    # and an API call that needs the database fails in the API's shape, within the pool timeout
    response, elapsed = timed_get(server, "/api/config/")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"].isdigit()
    assert elapsed < 5.0 + 3.0  # DB_POOL_TIMEOUT (5 s) plus slack


@pytest.mark.checklist("P4.5", "P6.9", "P6.10", "P6.12")
def test_health_is_503_fast_when_the_database_accepts_but_never_answers(
    start, redis_server, silent_listener
):
    # given a "database" that accepts TCP connections and never says a word
    hung_database = devstack.env.database_url(
        connections["default"].settings_dict, port=silent_listener.port
    )
    server = start(
        base_env(DJANGO_ENV="test", DATABASE_URL=hung_database, REDIS_URL=redis_server.url)
    )

    # when probed in bursts (hung checks must neither delay probes nor crowd out other checks)
    results = probe_in_bursts(server)

    # then
    assert silent_listener.accepted, "the server never even tried the hung database"
    for response, elapsed in results:
        assert response.status_code == 503, response.text
        checks = response.json()["checks"]
        assert checks["database"] in {"timeout", "unavailable"}
        assert checks["cache"] == "ok"
        assert elapsed < FAST_SECONDS


# --- Redis down --------------------------------------------------------------------------------


@pytest.mark.checklist("P6.9", "P6.10", "P6.12")
def test_health_is_503_fast_in_production_when_redis_refuses(start, database_url):
    # given production, which keeps Redis as its cache even when it is down at start-up
    server = start(
        local_production_env(
            DATABASE_URL=database_url, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
        )
    )

    # when
    response, elapsed = timed_get(server, "/health/")

    # then
    assert response.status_code == 503, response.text
    checks = response.json()["checks"]
    assert checks["cache"] in {"unavailable", "timeout"}
    assert checks["database"] == "ok"
    assert elapsed < FAST_SECONDS
    # and the rest of the API keeps serving
    response, elapsed = timed_get(server, "/api/config/")
    assert response.status_code == 200, response.text
    assert elapsed < FAST_SECONDS


@pytest.mark.checklist("P1.24", "P6.9", "P6.10", "P6.12")
def test_health_is_503_fast_in_production_when_redis_never_answers(
    start, database_url, silent_listener
):
    # given a "Redis" that accepts connections and never replies
    server = start(
        local_production_env(
            DATABASE_URL=database_url, REDIS_URL=f"redis://127.0.0.1:{silent_listener.port}/0"
        )
    )

    # when probed in bursts (hung checks must neither delay probes nor crowd out other checks)
    results = probe_in_bursts(server)

    # then
    assert silent_listener.accepted, "the server never even tried the hung Redis"
    for response, elapsed in results:
        assert response.status_code == 503, response.text
        checks = response.json()["checks"]
        assert checks["cache"] in {"timeout", "unavailable"}
        assert checks["database"] == "ok"
        assert elapsed < FAST_SECONDS
    response, elapsed = timed_get(server, "/api/config/")
    assert response.status_code == 200, response.text
    assert elapsed < FAST_SECONDS


@pytest.mark.checklist("P1.23", "P1.25")
def test_development_without_redis_at_start_serves_from_memory_and_stays_healthy(
    start, database_url
):
    # given development with Redis unreachable when the settings load
    server = start(
        base_env(
            DJANGO_ENV="development",
            DATABASE_URL=database_url,
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        )
    )

    # when
    response, elapsed = timed_get(server, "/health/")

    # then the in-memory cache is reported, by design not a failure
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["cache"] == "in_memory"
    assert checks["database"] == "ok"
    assert elapsed < FAST_SECONDS
    assert "Redis is unreachable" in server.output()
    assert server.get("/api/config/").status_code == 200


@pytest.mark.checklist("P1.24", "P1.25", "P6.10", "P11.18")
def test_redis_dying_later_neither_hangs_requests_nor_health_and_recovery_is_seen(
    start, database_url, work_dir
):
    # given a production server whose Redis is up
    redis = RedisServer(work_dir / "redis-that-dies")
    redis.start()
    try:
        server = start(local_production_env(DATABASE_URL=database_url, REDIS_URL=redis.url))
        response = server.get("/health/")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["cache"] == "ok"
        assert server.get("/api/config/").status_code == 200

        # when Redis dies
        redis.kill()

        # then the API keeps answering quickly and health says so quickly
        response, elapsed = timed_get(server, "/api/config/")
        assert response.status_code == 200, response.text
        assert elapsed < FAST_SECONDS
        response, elapsed = timed_get(server, "/health/")
        assert response.status_code == 503, response.text
        assert response.json()["checks"]["cache"] in {"unavailable", "timeout"}
        assert response.json()["checks"]["database"] == "ok"
        assert elapsed < FAST_SECONDS

        # when Redis comes back on the same port
        redis.start()

        # then health recovers by itself
        deadline = time.monotonic() + 15
        while True:
            response, elapsed = timed_get(server, "/health/")
            assert elapsed < FAST_SECONDS
            if response.status_code == 200:
                break
            assert time.monotonic() < deadline, f"health never recovered: {response.text}"
            time.sleep(0.5)
        assert response.json()["checks"]["cache"] == "ok"
    finally:
        redis.kill()
