"""CPU per rider ping inside one process: Django's ASGI handler against core.hotpath's.

    .venv/bin/python -m bench.handlers [--pings 1000] [--repeats 3]

No server and no sockets: the ping is handed to each ASGI handler of config.asgi in this
process, one after another, with the benchmark database (`delivery_bench`, emptied and seeded
with one rider on a delivery) and a throwaway redis-server, under the production settings the
servers of `make bench` use (multiprocess Prometheus included). It prints the process CPU per
ping for Django's handler, the hot path, and the hot path without each of its middleware;
each variant is measured --repeats times in turn, and the lowest figure is kept. Process CPU
includes the pool thread's database client and the Redis client, so a difference under about
0.2 ms is within the noise of one run. What `docs/performance.md` says the hot path and its
middleware cost comes from here.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from devstack.bench_env import new_environment, prepare_database, say


def ping_scope(token: str, body: bytes) -> dict:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/riders/me/location/",
        "raw_path": b"/api/v1/riders/me/location/",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def ping(app, trip, token: str) -> None:
    from django.utils import timezone

    body = json.dumps(
        {"lat": trip.lat, "lng": trip.lng, "recorded_at": timezone.now().isoformat()}
    ).encode()
    delivered = False

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect: Django's handler listens for one

    statuses = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(ping_scope(token, body), receive, send)
    if statuses != [202]:
        raise SystemExit(f"bench: a ping was answered {statuses}")


async def cpu_per_ping(app, trip, token: str, pings: int) -> float:
    for _ in range(50):
        await ping(app, trip, token)
    started = time.process_time()
    for _ in range(pings):
        await ping(app, trip, token)
    return (time.process_time() - started) / pings * 1000


def variants():
    """(name, the ASGI app) to measure: each hot path is built with its own middleware list."""
    from django.conf import settings
    from django.urls import reverse

    from config.asgi import django_asgi_app
    from core.hotpath import HotPathHandler

    path = reverse("riders:location")
    full = list(settings.HOT_PATH_MIDDLEWARE)

    def hot_path(middleware):
        settings.HOT_PATH_MIDDLEWARE = middleware
        try:
            return HotPathHandler(paths=[path], fallback=django_asgi_app)
        finally:
            settings.HOT_PATH_MIDDLEWARE = full

    yield "Django's ASGI handler (MIDDLEWARE)", django_asgi_app
    yield "hot path (HOT_PATH_MIDDLEWARE)", hot_path(full)
    yield "hot path, no middleware", hot_path([])
    prometheus = [name for name in full if "prometheus" in name]
    yield (
        "hot path without the Prometheus pair",
        hot_path([name for name in full if name not in prometheus]),
    )
    for name in full:
        if name not in prometheus:
            yield (
                f"hot path without {name.rsplit('.', 1)[1]}",
                hot_path([other for other in full if other != name]),
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    from devstack.redis import RedisServer

    work_dir = Path(tempfile.mkdtemp(prefix="delivery-bench-handlers-"))
    redis = RedisServer(work_dir / "redis")
    redis.start()
    try:
        env = new_environment(redis.url, args.database_url)
        prepare_database(env)
        (work_dir / "prometheus").mkdir()
        os.environ.update(env.server_env(PROMETHEUS_MULTIPROC_DIR=str(work_dir / "prometheus")))
        import django

        django.setup()
        from bench import seed
        from bench.run import access_token

        seed.reset()
        trip = seed.trips(1, seed.service_area(), random.Random(9))[0]
        token = access_token(trip.rider_user)
        measured = {}
        apps = list(variants())

        for _ in range(args.repeats):
            for name, app in apps:
                figure = asyncio.run(cpu_per_ping(app, trip, token, args.pings))
                measured[name] = min(measured.get(name, figure), figure)
        hot = measured["hot path (HOT_PATH_MIDDLEWARE)"]
        say(f"CPU per ping in this process, lowest of {args.repeats}, {args.pings} pings each:")
        for name, figure in measured.items():
            print(f"  {name:<55} {figure:6.3f} ms  ({figure - hot:+.3f})")
    finally:
        redis.kill()


if __name__ == "__main__":
    sys.exit(main())
