"""Per-IP and per-phone throttles through the HTTP API, including while Redis is down."""

import socket

import pytest
import redis.exceptions
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.test import override_settings

from accounts.tests.factories import phone_number
from accounts.tests.support import OTP_REQUEST_URL, OTP_VERIFY_URL
from core.tests.production_env import production_env, settings_as_json
from devstack.env import base_env

pytestmark = pytest.mark.django_db


def throttle_rates(**rates: str):
    """Overrides some scoped rates; the throttles read them on every request."""
    merged = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates}
    return override_settings(
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": merged}
    )


def request_code(client, phone, ip="203.0.113.7", **extra):
    return client.post(OTP_REQUEST_URL, {"phone": phone}, format="json", REMOTE_ADDR=ip, **extra)


def verify(client, phone, ip):
    return client.post(
        OTP_VERIFY_URL,
        {"phone": phone, "otp": "000000", "role": "customer"},
        format="json",
        REMOTE_ADDR=ip,
    )


def assert_throttled(response):
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_requests_from_one_ip_are_throttled_across_phone_numbers(api_client):
    with throttle_rates(otp_request_ip="3/hour"):
        # given: three codes for three different numbers from one address
        for n in range(3):
            assert request_code(api_client, phone_number(n)).status_code == 202

        # when
        fourth = request_code(api_client, phone_number(3))
        # a forged X-Forwarded-For does not buy a fresh allowance (NUM_PROXIES=0)
        forged = request_code(api_client, phone_number(4), HTTP_X_FORWARDED_FOR="198.51.100.9")
        other_ip = request_code(api_client, phone_number(5), ip="203.0.113.8")

    # then
    assert_throttled(fourth)
    assert_throttled(forged)
    assert other_ip.status_code == 202


def test_verify_tries_for_one_phone_are_throttled_across_ips_and_spellings(api_client):
    with throttle_rates(otp_verify_phone="3/hour"):
        # given: three tries from three addresses, the number spelt two ways
        for n, phone in enumerate(["+919812345678", "98123 45678", "098123-45678"]):
            assert verify(api_client, phone, ip=f"203.0.113.{n + 1}").status_code == 400

        # when
        fourth = verify(api_client, "+919812345678", ip="203.0.113.9")
        other_phone = verify(api_client, phone_number(7), ip="203.0.113.9")

    # then
    assert_throttled(fourth)
    assert other_phone.status_code == 400


def _dead_redis_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # closed again: nothing listens there


def test_throttles_keep_counting_while_redis_is_down(api_client):
    # given: the production cache backend, pointed at a Redis that is not there
    dead_redis = {
        "default": {
            "BACKEND": "core.cache.RedisCacheWithMemoryFallback",
            "LOCATION": _dead_redis_url(),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
                "FALLBACK_SECONDS": 60,
            },
        }
    }
    with override_settings(CACHES=dead_redis), throttle_rates(otp_request_ip="2/hour"):
        # when
        answers = [request_code(api_client, phone_number(n)) for n in range(3)]

        # then: Redis really failed, and the gate stayed shut anyway
        assert caches["default"].using_fallback
    assert [answer.status_code for answer in answers[:2]] == [202, 202]
    assert_throttled(answers[2])


class FailingCache(LocMemCache):
    """A cache backend that raises instead of falling back, as a plain Redis client would."""

    def get(self, *args, **kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to redis. Refused.")


def test_a_cache_that_raises_closes_the_gate_instead_of_opening_it(api_client):
    failing = {"default": {"BACKEND": f"{__name__}.FailingCache"}}

    with override_settings(CACHES=failing):
        response = request_code(api_client, phone_number(1))

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"


@pytest.mark.parametrize(
    ("django_env", "per_ip"),
    [
        # every simulated user of `manage.py simulate` signs in from the developer's address
        ("development", ("1000/hour", "2000/hour")),
        ("production", ("30/hour", "60/hour")),
    ],
)
def test_the_per_ip_limits_are_higher_by_default_only_on_a_development_server(django_env, per_ip):
    env = production_env() if django_env == "production" else base_env(DJANGO_ENV=django_env)

    rates = settings_as_json(env, "REST_FRAMEWORK")["REST_FRAMEWORK"]["DEFAULT_THROTTLE_RATES"]

    assert (rates["otp_request_ip"], rates["otp_verify_ip"]) == per_ip
    assert (rates["otp_request_phone"], rates["otp_verify_phone"]) == ("10/hour", "20/hour")
