"""Checks of Redis (phase 1)."""

from django.conf import settings

from config.redis_probe import redact
from readiness.masking import describe
from readiness.registry import Outcome, Unreachable, check, failed, judged, passed
from readiness.runner import Context
from readiness.shared import _celery_app, _redis_client


def _redis(context: Context) -> dict:
    def compute() -> dict:
        if not settings.REDIS_URL:
            raise Unreachable("REDIS_URL is not set")
        client = _redis_client(settings.REDIS_URL)
        try:
            client.ping()
            return {"version": client.info("server").get("redis_version")}
        except Exception as error:
            raise Unreachable(f"Redis at {redact(settings.REDIS_URL)}: {describe(error)}") from None
        finally:
            client.close()

    return context.once("redis", compute)


@check("P1.22", "P7.6")
def redis_configured(context: Context) -> Outcome:
    url = settings.REDIS_URL
    if not url:
        return failed("REDIS_URL is not set")
    if not settings.USE_REDIS:
        return failed("Redis is not in use: in-process cache, channel layer and broker")
    return passed(f"REDIS_URL={redact(url)}: cache, channel layer and Celery")


@check("P1.23", "P11.16")
def redis_reachable(context: Context) -> Outcome:
    problems = []
    if settings.REDIS_FALLBACK:
        problems.append("Redis was unreachable when this process started (in-memory fallback)")
    try:
        version = _redis(context)["version"]
    except Unreachable as error:
        problems.append(str(error))
        version = None
    return judged(problems, f"validated at start-up; PING answered by Redis {version}")


def _cache_options() -> dict:
    options = settings.CACHES["default"].get("OPTIONS", {})
    if not options.get("CONNECTION_POOL_KWARGS"):
        raise Unreachable(f"the cache is {settings.CACHES['default']['BACKEND']}, not Redis")
    return options


@check("P1.24")
def redis_timeouts(context: Context) -> Outcome:
    options = _cache_options()
    transport = _celery_app().conf.broker_transport_options or {}
    found = {
        "cache connect": options.get("SOCKET_CONNECT_TIMEOUT"),
        "cache read": options.get("SOCKET_TIMEOUT"),
        "broker connect": transport.get("socket_connect_timeout"),
        "broker read": transport.get("socket_timeout"),
    }
    bad = [f"{name} timeout {value}" for name, value in found.items() if not 0 < (value or 0) <= 5]
    return judged(bad, ", ".join(f"{name} {value} s" for name, value in found.items()))


@check("P1.25")
def redis_fallback_cache(context: Context) -> Outcome:
    from django.core.cache import caches

    from core.cache import RedisCacheWithMemoryFallback

    cache = caches["default"]
    if not isinstance(cache, RedisCacheWithMemoryFallback):
        return failed(f"the cache is {type(cache).__name__}, without an in-memory fallback")
    state = "on its fallback now" if cache.using_fallback else "on Redis now"
    return passed(
        f"Redis cache stepping aside to memory for {cache.fallback_seconds:.0f} s ({state})"
    )


@check("P1.26")
def redis_retry_on_timeout(context: Context) -> Outcome:
    pool = _cache_options()["CONNECTION_POOL_KWARGS"]
    transport = _celery_app().conf.broker_transport_options or {}
    problems = [] if pool.get("retry_on_timeout") else ["the cache pool has no retry_on_timeout"]
    if transport.get("retry_on_timeout", True):
        # It can leave a worker stalled after a Redis restart (config/celery.py says how).
        problems.append("the broker has retry_on_timeout (a worker can stall after an outage)")
    return judged(problems, "retry_on_timeout on the cache pool, off for the broker")


@check("P1.27")
def redis_heartbeat(context: Context) -> Outcome:
    app = _celery_app()
    found = {
        "cache": _cache_options()["CONNECTION_POOL_KWARGS"].get("health_check_interval"),
        "broker": (app.conf.broker_transport_options or {}).get("health_check_interval"),
        "results": app.conf.redis_backend_health_check_interval,
    }
    bad = [f"{name} health_check_interval={value}" for name, value in found.items() if value != 60]
    return judged(bad, "health_check_interval=60 s on the cache, broker and results")
