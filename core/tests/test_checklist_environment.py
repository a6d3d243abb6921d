"""Environment lines of the checklist: optional variables and their defaults, the secret key's
fallback, and the Redis URLs managed platforms hand out (Railway's with a password,
ElastiCache's over TLS). Each loads the real settings in a fresh process under the given
environment, as a deployed process would."""

import asyncio
import json
import secrets
import shutil
import socket
import subprocess
import time

import pytest
import redis.asyncio
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings as django_settings

from core.tests.production_env import production_env, settings_as_json
from devstack.commands import run_python
from devstack.ports import LOCALHOST, free_port

OPTIONAL = [
    "IS_PRIMARY",
    "SMS_PROVIDER",
    "RAZORPAY_KEY_ID",
    "RAZORPAY_KEY_SECRET",
    "PAYMENTS_ENABLED",
    "SENTRY_DSN",
    "OTP_EXPIRY_SECONDS",
    "RIDER_FIXED_PAY_PER_ORDER_PAISE",
]


@pytest.mark.checklist("P7.9", "P7.14", "P7.15", "P7.16", "P7.17", "P7.18", configured=True)
def test_optional_variables_have_their_documented_defaults_and_can_be_set():
    # when production starts with none of them set
    defaults = settings_as_json(production_env(), *OPTIONAL)

    # then it runs with the documented defaults
    assert defaults == {
        "IS_PRIMARY": False,
        "SMS_PROVIDER": "dummy",
        "RAZORPAY_KEY_ID": "",
        "RAZORPAY_KEY_SECRET": "",
        "PAYMENTS_ENABLED": False,
        "SENTRY_DSN": "",
        "OTP_EXPIRY_SECONDS": 300,
        "RIDER_FIXED_PAY_PER_ORDER_PAISE": 5000,  # RIDER_FIXED_PAY_PER_ORDER=50 rupees
    }

    # and each one, when set, is what the service uses
    chosen = settings_as_json(
        production_env(
            IS_PRIMARY="1",
            SMS_PROVIDER="msg91",
            MSG91_AUTH_KEY="msg91-key",  # pragma: allowlist secret
            MSG91_OTP_TEMPLATE_ID="template",
            RAZORPAY_KEY_ID="rzp_test_abc",
            RAZORPAY_KEY_SECRET="razorpay-secret",  # pragma: allowlist secret
            RAZORPAY_WEBHOOK_SECRET="webhook-secret",  # pragma: allowlist secret
            OTP_EXPIRY_SECONDS="120",
            RIDER_FIXED_PAY_PER_ORDER="62.50",
        ),
        *OPTIONAL,
    )
    assert chosen == {
        "IS_PRIMARY": True,
        "SMS_PROVIDER": "msg91",
        "RAZORPAY_KEY_ID": "rzp_test_abc",
        "RAZORPAY_KEY_SECRET": "razorpay-secret",  # pragma: allowlist secret
        "PAYMENTS_ENABLED": True,
        "SENTRY_DSN": "",
        "OTP_EXPIRY_SECONDS": 120,
        "RIDER_FIXED_PAY_PER_ORDER_PAISE": 6250,
    }


@pytest.fixture
def redis_with_password(tmp_path):
    """A throwaway redis-server that, like Railway's Redis, wants a password."""
    password = secrets.token_urlsafe(16)
    port = free_port()
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", LOCALHOST, "--save", "", "--appendonly"),
            *("no", "--dir", str(tmp_path), "--requirepass", password),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((LOCALHOST, port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"-NOAUTH"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        yield port, password
    finally:
        process.kill()
        process.wait(timeout=10)


_EVERY_REDIS_CLIENT = """
import asyncio, json, django
django.setup()
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from config.celery import app

async def channel_round_trip():
    layer = get_channel_layer()
    name = await layer.new_channel()
    await layer.send(name, {"type": "probe"})
    return (await layer.receive(name))["type"]

cache.redis.set("railway-probe", "ok", 30)  # the Redis cache itself, not its fallback
with app.connection_for_write() as broker:
    broker.ensure_connection(max_retries=1)
    broker_ping = broker.default_channel.client.ping()
print(json.dumps({
    "available": settings.REDIS_AVAILABLE,
    "cache": cache.redis.get("railway-probe"),
    "broker": broker_ping,
    "results": app.backend.client.ping(),
    "channel_layer": asyncio.run(channel_round_trip()),
}))
"""


@pytest.mark.slow
@pytest.mark.checklist("P8.4")
def test_a_redis_url_with_a_user_and_password_serves_cache_broker_results_and_sockets(
    redis_with_password,
):
    # given the URL shape Railway's Redis plugin hands out: redis://default:<password>@host
    port, password = redis_with_password
    url = f"redis://default:{password}@{LOCALHOST}:{port}/0"

    # when production starts on it and every Redis client makes a round trip
    result = run_python(_EVERY_REDIS_CLIENT, env=production_env(REDIS_URL=url))

    # then each of them authenticated and worked
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "available": True,
        "cache": "ok",
        "broker": True,
        "results": True,
        "channel_layer": "probe",
    }
    # and a wrong password is noticed at start-up, not taken for a working Redis
    wrong = f"redis://default:not-{password}@{LOCALHOST}:{port}/0"  # pragma: allowlist secret
    assert settings_as_json(production_env(REDIS_URL=wrong), "REDIS_AVAILABLE") == {
        "REDIS_AVAILABLE": False
    }


_TLS_SETTINGS_OF_EVERY_CLIENT = """
import asyncio, json, ssl, django
django.setup()
import redis, redis.asyncio
from channels.layers import get_channel_layer
from django.core.cache import cache
from config.celery import app
from core import health

async def channel_layer_pool():
    # the pool the layer's Redis client uses on this event loop
    shard = get_channel_layer()._get_layer()._shards[0]
    shard._ensure_redis()
    return shard._redis.connection_pool

MODES = {ssl.CERT_REQUIRED: "required", ssl.CERT_OPTIONAL: "optional", ssl.CERT_NONE: "none"}

def mode(value):
    return value if isinstance(value, str) or value is None else MODES[value]

def pool(pool):
    classes = (redis.SSLConnection, redis.asyncio.SSLConnection)
    return {
        "tls": issubclass(pool.connection_class, classes),
        "verify": mode(pool.connection_kwargs.get("ssl_cert_reqs")),
        "password": pool.connection_kwargs.get("password"),
    }

with app.connection_for_write() as broker:
    broker_ssl = broker.ssl
params = app.backend.connparams
print(json.dumps({
    "cache": pool(cache.redis.client.get_client(write=True).connection_pool),
    "health": pool(health.redis_client().connection_pool),
    "channel_layer": pool(asyncio.run(channel_layer_pool())),
    "results": {
        "tls": params["connection_class"] is redis.SSLConnection,
        "verify": mode(params["ssl_cert_reqs"]),
        "password": params["password"],
    },
    "broker": mode(broker_ssl["ssl_cert_reqs"]),
}))
"""


@pytest.mark.checklist("P8.12", configured=True)
def test_a_tls_redis_url_gives_every_redis_client_a_verified_tls_connection():
    # given an ElastiCache-style URL: in-transit encryption (rediss://) and an AUTH token;
    # nothing listens there, so this shows how each client would connect, not a connection
    url = f"rediss://:auth-token@{LOCALHOST}:{free_port()}/0?ssl_cert_reqs=required"

    # when production loads with it
    result = run_python(_TLS_SETTINGS_OF_EVERY_CLIENT, env=production_env(REDIS_URL=url))

    # then the cache, the health check, the channel layer, the result backend and the broker
    # all speak TLS, verify the server's certificate and send the token
    assert result.returncode == 0, result.stderr
    clients = json.loads(result.stdout.strip().splitlines()[-1])
    token = "auth-token"  # pragma: allowlist secret
    expected = {"tls": True, "verify": "required", "password": token}
    for name in ("cache", "health", "channel_layer", "results"):
        assert clients[name] == expected, name
    assert clients["broker"] == "required"


@pytest.mark.checklist("P9.11", configured=True)
def test_the_sockets_of_a_process_share_one_bounded_redis_connection_pool():
    # the channel layer every WebSocket consumer of this process sends and listens through
    async def pool_of_this_process():
        layer = get_channel_layer()
        assert isinstance(layer, RedisPubSubChannelLayer)
        shard = layer._get_layer()._shards[0]  # one Redis; the layer keeps one client per loop
        shard._ensure_redis()
        pool = shard._redis.connection_pool
        await layer.flush()  # closes the client
        return pool

    pool = asyncio.run(pool_of_this_process())
    assert isinstance(pool, redis.asyncio.ConnectionPool)
    assert pool.max_connections == django_settings.CHANNEL_LAYER_MAX_CONNECTIONS
    # and production's default bound (config/settings.py says why it is not lower)
    assert settings_as_json(production_env(), "CHANNEL_LAYER_MAX_CONNECTIONS") == {
        "CHANNEL_LAYER_MAX_CONNECTIONS": 1000
    }
