"""A quick, dependency-light check that Redis answers, used while settings load."""

import re
from urllib.parse import urlsplit, urlunsplit

import redis

_PASSWORD_IN_QUERY = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


def ping(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        # Settings load in gunicorn's master before workers fork: no socket may outlive this.
        client.close()
        client.connection_pool.disconnect()


def redact(url: str) -> str:
    """The URL without its password (user:password@ or ?password=), fit for a log line."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = _PASSWORD_IN_QUERY.sub(r"\1***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))
