"""What checks of several areas share: the foreign origin, Redis, the Celery app and its workers."""

from urllib.parse import urlsplit

from config.redis_probe import redact
from readiness.masking import describe
from readiness.registry import Unreachable
from readiness.runner import Context

REDIS_TIMEOUT_SECONDS = 3.0
# Celery's control commands wait this long for the workers' replies.
CELERY_REPLY_SECONDS = 2.0
QUEUES = ("high", "default", "low")
# A host no deployment serves: a CORS, Origin or 404 probe that must be refused.
FOREIGN_ORIGIN = "https://readiness-check.invalid"


def _redis_client(url: str):
    import redis

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )


def _celery_app():
    from config.celery import app

    return app


def _broker(context: Context) -> dict:
    """The broker's queue lengths; raises Unreachable first, so no Celery call retries for long."""

    def compute() -> dict:
        url = _celery_app().conf.broker_url or ""
        if urlsplit(url).scheme not in {"redis", "rediss"}:
            raise Unreachable(f"the broker is {redact(url) or 'unset'}, not Redis")
        client = _redis_client(url)
        try:
            # kombu keeps each priority level of a queue in a list of its own
            keys = {
                name: [name] + [f"{name}\x06\x16{level}" for level in (3, 6, 9)] for name in QUEUES
            }
            return {name: sum(client.llen(key) for key in keys[name]) for name in QUEUES}
        except Exception as error:
            raise Unreachable(f"broker {redact(url)}: {describe(error)}") from None
        finally:
            client.close()

    return context.once("broker", compute)


def _workers(context: Context) -> dict:
    """The workers answering ping, with their stats and the queues each consumes."""

    def compute() -> dict:
        _broker(context)
        app = _celery_app()
        replies = app.control.ping(timeout=CELERY_REPLY_SECONDS) or []
        nodes = sorted(node for reply in replies for node in reply)
        if not nodes:
            return {"nodes": [], "stats": {}, "queues": {}}
        inspect = app.control.inspect(
            timeout=CELERY_REPLY_SECONDS, destination=nodes, limit=len(nodes)
        )
        active_queues = inspect.active_queues() or {}
        return {
            "nodes": nodes,
            "stats": inspect.stats() or {},
            "queues": {node: sorted(q["name"] for q in qs) for node, qs in active_queues.items()},
        }

    return context.once("workers", compute)
