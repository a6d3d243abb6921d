"""Redis as configured for production, read back from the objects that talk to it.

Each test loads the production settings in a fresh process: the cache's real redis-py
connection pool, the start-up check, and a hung Redis (a port that accepts and never answers).
"""

import json

import pytest

from core.tests.production_env import production_env, settings_as_json
from devstack.commands import run_python
from devstack.ports import SilentListener, free_port

_CACHE_CONNECTION = """
import json, django
django.setup()
from django.core.cache import caches
cache = caches["default"]
pool = cache.redis.client.get_client().connection_pool
kwargs = pool.connection_kwargs
names = ["socket_timeout", "socket_connect_timeout", "retry_on_timeout", "health_check_interval"]
print(json.dumps({
    "backend": type(cache).__module__ + "." + type(cache).__name__,
    **{name: kwargs.get(name) for name in names},
}))
"""


@pytest.mark.checklist("P1.24", "P1.26", "P1.27", configured=True)
def test_the_production_cache_connections_have_the_timeouts_retry_and_health_check():
    result = run_python(_CACHE_CONNECTION, env=production_env())

    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "backend": "core.cache.RedisCacheWithMemoryFallback",
        "socket_timeout": 5.0,
        "socket_connect_timeout": 5.0,
        "retry_on_timeout": True,
        "health_check_interval": 60,
    }


@pytest.mark.checklist("P1.22", "P1.23")
def test_redis_is_checked_when_the_settings_load():
    # when production starts with Redis up, and with nothing listening at REDIS_URL
    up = settings_as_json(production_env(), "REDIS_AVAILABLE", "STARTUP_WARNINGS")
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    down = settings_as_json(
        production_env(REDIS_URL=dead_url), "REDIS_URL", "REDIS_AVAILABLE", "STARTUP_WARNINGS"
    )

    # then the first found it, and the second knows and says so, keeping the URL it was given
    assert up["REDIS_AVAILABLE"] is True
    assert not any("Redis" in warning for warning in up["STARTUP_WARNINGS"])
    assert (down["REDIS_URL"], down["REDIS_AVAILABLE"]) == (dead_url, False)
    assert any(
        "Redis is unreachable" in warning and dead_url in warning
        for warning in down["STARTUP_WARNINGS"]
    )


# Set a value, wait out the start-up fallback window, then time two reads against a Redis
# that accepts connections and never answers.
_READS_AGAINST_A_HUNG_REDIS = """
import json, time, django
django.setup()
from django.core.cache import cache
cache.set("checklist-key", "kept in memory", 60)
time.sleep(float(django.conf.settings.CACHES["default"]["OPTIONS"]["FALLBACK_SECONDS"]) + 0.2)
timings = []
for _ in range(2):
    started = time.monotonic()
    value = cache.get("checklist-key")
    timings.append({"value": value, "seconds": time.monotonic() - started})
print(json.dumps(timings))
"""


@pytest.mark.checklist("P1.24", "P1.25", "P1.26")
def test_a_hung_redis_costs_a_few_socket_timeouts_then_the_cache_serves_from_memory():
    # given production with its Redis hung, a 1 s socket timeout (5 s by default) and a short
    # fallback window
    listener = SilentListener()
    try:
        env = production_env(
            REDIS_URL=f"redis://127.0.0.1:{listener.port}/0",
            REDIS_SOCKET_TIMEOUT="1",
            REDIS_FALLBACK_SECONDS="0.5",
        )

        # when the cache is read twice
        result = run_python(_READS_AGAINST_A_HUNG_REDIS, env=env)
    finally:
        listener.close()

    # then the first read timed out, was retried on a new connection each time (the settings'
    # start-up ping made the first connection), gave up after a bounded number of socket
    # timeouts and answered from process memory
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = json.loads(result.stdout.strip().splitlines()[-1])
    attempts = len(listener.accepted) - 1
    assert 2 <= attempts <= 4, attempts
    assert first["value"] == "kept in memory"
    assert first["seconds"] == pytest.approx(attempts * 1.0, abs=0.5), (attempts, first)
    # and the next read did not wait for Redis again
    assert second == {"value": "kept in memory", "seconds": pytest.approx(0, abs=0.2)}
