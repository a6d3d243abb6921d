"""`make bench`: the hot paths against their targets, each beside a baseline from the same run.

    .venv/bin/python -m bench.run [--seconds 5] [--rounds 3] [--connections 16] [--workers 2]

Starts, on loopback: a throwaway redis-server, the service as deployed (gunicorn, uvicorn
workers, production settings, DEBUG off) and the baseline (gunicorn sync WSGI workers, same
settings, Django's persistent connections) over the benchmark's own database (`delivery_bench`,
see devstack.bench_env). Then measures, with the Python load generator in bench.load:

1-3. rider location over HTTP, over an open WebSocket, and quote + create order (cash), each
     closed-loop with --connections users, in --rounds rounds that alternate with the baseline
     (a one-row UPDATE through a bare Django view); the ratio is the subject's rate over the
     baseline's, totals over all rounds;
4.   the nearest eligible riders for an order among 100,000 riders (delivery.selectors,
     KNN on the GiST index) against the same query with that index dropped (in a transaction
     that is rolled back);
5-6. 1,000 orders watched at once over /ws/delivery/, their 1,000 riders pinging over
     /ws/rider/ every --watch-ping-seconds, the time from a ping leaving to its location frame
     reaching the customer; meanwhile /health/ and a bare endpoint probed at 10/s each;
7.   the largest resident memory of a web worker at the end.

Prints one table and writes its rows under "bench" in bench/results.json. Runs in about
three minutes.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import measure
from devstack.bench_env import database_name, new_environment, prepare_database, say, setup_django
from devstack.web import start_web
from simulator.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
CITY_RIDERS = 100_000
WATCHED_ORDERS = 1_000
KNN_QUERIES = 300
KNN_QUERIES_UNINDEXED = 5


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline: float | None
    ratio: float | None
    target: str
    met: bool

    def as_dict(self) -> dict:
        def clean(number):
            return None if number is None or math.isnan(number) else round(number, 3)

        return {
            "name": self.name,
            "value": clean(self.value),
            "unit": self.unit,
            "baseline": clean(self.baseline),
            "ratio": clean(self.ratio),
            "target": self.target,
            "met": bool(self.met),
        }


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# --- 4. KNN --------------------------------------------------------------------------------


def knn(rng: random.Random, city_riders: int) -> Row:
    from django.conf import settings
    from django.contrib.gis.geos import Point
    from django.db import connection, transaction

    from bench import seed
    from delivery.selectors import riders_nearest_eligible, riders_nearest_eligible_plan

    seed.refresh_positions()
    radius, limit = settings.DISPATCH_RADIUS_M, settings.DISPATCH_OFFERS_PER_ROUND
    pickups = [seed.point_near(seed.CENTRE, 12_000, rng) for _ in range(KNN_QUERIES)]

    def timed(points) -> tuple[list[float], int]:
        times, found = [], 0
        for lat, lng in points:
            started = time.perf_counter()
            found += len(
                riders_nearest_eligible(
                    order_id=uuid.uuid4(),
                    pickup=Point(lng, lat, srid=4326),
                    radius_m=radius,
                    limit=limit,
                )
            )
            times.append(time.perf_counter() - started)
        return times, found

    timed(pickups[:20])  # warm the cache
    indexed, found = timed(pickups)
    plan = riders_nearest_eligible_plan(
        order_id=uuid.uuid4(), pickup=Point(seed.CENTRE[1], seed.CENTRE[0], srid=4326),
        radius_m=radius, limit=limit,
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef ILIKE %s",
            ["riders_rider", "%USING gist (last_location)%"],
        )
        index = cursor.fetchone()[0]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f'DROP INDEX "{index}"')
        unindexed, _ = timed(pickups[:KNN_QUERIES_UNINDEXED])
        transaction.set_rollback(True)
    value = percentile(indexed, 0.5) * 1000
    baseline = percentile(unindexed, 0.5) * 1000
    ratio = baseline / value
    say(
        f"KNN: {len(indexed)} queries, p50 {value:.2f} ms, p99 "
        f"{percentile(indexed, 0.99) * 1000:.2f} ms, {found / len(indexed):.1f} riders found "
        f"on average; without {index}: p50 {baseline:.1f} ms; plan uses the index: "
        f"{index in plan}"
    )
    return Row(
        f"nearest eligible riders, {city_riders:,} riders (p50)",
        value,
        "ms",
        baseline,
        ratio,
        "p50 ≤ 1 ms and ≥ 50× faster",
        value <= 1.0 and ratio >= 50,
    )


def access_token(user) -> str:
    """An access JWT as sign-in would issue it (the servers share this process's key)."""
    from rest_framework_simplejwt.tokens import AccessToken

    return str(AccessToken.for_user(user))


# --- 1-3. Throughput -------------------------------------------------------------------------


class Throughput:
    """The closed-loop measurements that alternate with the baseline."""

    def __init__(self, baseline, web, trips, connections: int, *, profile: str, meter):
        self.baseline, self.web, self.profile, self.meter = baseline, web, profile, meter
        self.baseline_port, self.port = baseline.port, web.port
        self.trips = trips[:connections]
        self.connections = connections
        self.rng = random.Random(3)
        self.rider_tokens = [access_token(trip.rider_user) for trip in self.trips]
        self.customer_tokens = [access_token(trip.customer) for trip in self.trips]

    def baseline_units(self):
        from bench.load import HttpClient, http_request

        request = http_request("GET", "/bench/update/", self.baseline_port)

        def unit(client):
            async def run():
                status, _ = await client.request(request)
                return None if status == 200 else f"HTTP {status}"

            return run

        return [unit(HttpClient("127.0.0.1", self.baseline_port)) for _ in range(self.connections)]

    def http_units(self):
        from bench.load import HttpClient, http_request

        def unit(trip, token):
            client = HttpClient("127.0.0.1", self.port)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

            async def run():
                body = json.dumps({"lat": trip.lat, "lng": trip.lng, "recorded_at": now_iso()})
                data = http_request(
                    "POST", "/api/v1/riders/me/location/", self.port,
                    body=body.encode(), headers=headers,
                )  # fmt: skip
                status, _ = await client.request(data)
                return None if status == 202 else f"HTTP {status}"

            return run

        pairs = zip(self.trips, self.rider_tokens, strict=True)
        return [unit(trip, token) for trip, token in pairs]

    def ws_units(self, sockets):
        def unit(trip, socket):
            async def run():
                frame = {"type": "location", "lat": trip.lat, "lng": trip.lng}
                await socket.send(json.dumps({**frame, "recorded_at": now_iso()}))
                reply = json.loads(await socket.recv())
                return None if reply.get("type") == "location_ack" else reply.get("code", "?")

            return run

        return [unit(trip, socket) for trip, socket in zip(self.trips, sockets, strict=True)]

    def order_units(self):
        from bench import seed
        from bench.load import HttpClient, http_request

        def unit(token):
            client = HttpClient("127.0.0.1", self.port)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

            async def run():
                pickup = seed.point_near(seed.CENTRE, 3000, self.rng)
                drop = seed.point_near(pickup, 3000, self.rng)
                quote = {
                    "pickup": {"lat": pickup[0], "lng": pickup[1], "address": "Pickup"},
                    "drop": {"lat": drop[0], "lng": drop[1], "address": "Drop"},
                    "package": {"description": "Parcel", "weight_grams": 800},
                }
                status, body = await client.request(
                    http_request(
                        "POST", "/api/v1/orders/quote/", self.port,
                        body=json.dumps(quote).encode(), headers=headers,
                    )
                )  # fmt: skip
                if status != 201:
                    return f"quote HTTP {status}"
                order = {"quote_id": json.loads(body)["id"], "payment_method": "cod"}
                status, _ = await client.request(
                    http_request(
                        "POST", "/api/v1/orders/", self.port, body=json.dumps(order).encode(),
                        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                    )
                )  # fmt: skip
                return None if status == 201 else f"order HTTP {status}"

            return run

        return [unit(token) for token in self.customer_tokens]

    async def run(self, *, rounds: int, seconds: float, warmup: float) -> dict:
        from bench.load import Result, closed_loop, ws_connect

        totals = {name: Result() for name in ("baseline", "http", "ws", "order")}
        per_round = {name: [] for name in totals}
        # Each order's customer watches it, so every ping is really delivered to a socket.
        watchers = await asyncio.gather(
            *(
                ws_connect(f"ws://127.0.0.1:{self.port}/ws/delivery/{trip.order_id}/?token={token}")
                for trip, token in zip(self.trips, self.customer_tokens, strict=True)
            )
        )
        drains = [asyncio.create_task(_drain(socket)) for socket in watchers]
        try:
            for number in range(rounds):
                first = warmup * 2 if number == 0 else warmup
                for name in totals:
                    profilers = []
                    if name == self.profile and number == 0:
                        server = self.baseline if name == "baseline" else self.web
                        profilers = measure.profile(
                            server.worker_pids(), first + seconds, server.log_path.parent, name
                        )
                    server = self.baseline if name == "baseline" else self.web
                    meter = self.meter(server)
                    if name == "ws":
                        sockets = await asyncio.gather(
                            *(
                                ws_connect(f"ws://127.0.0.1:{self.port}/ws/rider/?token={token}")
                                for token in self.rider_tokens
                            )
                        )
                        try:
                            result = await closed_loop(
                                self.ws_units(sockets), warmup=first, seconds=seconds, meter=meter
                            )
                        finally:
                            await asyncio.gather(*(socket.close() for socket in sockets))
                    else:
                        units = getattr(self, f"{name}_units")()
                        result = await closed_loop(
                            units, warmup=first, seconds=seconds, meter=meter
                        )
                    for profiler in profilers:
                        profiler.wait()
                    if profilers:
                        summary = measure.profile_summary(server.log_path.parent, name)
                        say(f"profile of {name}:\n{summary}")
                    totals[name].merge(result)
                    per_round[name].append(result.rate)
                    say(
                        f"round {number + 1} {name:<8} {result.rate:7.0f}/s  p50 "
                        f"{percentile(result.latencies, 0.5) * 1000:6.1f} ms  p99 "
                        f"{percentile(result.latencies, 0.99) * 1000:6.1f} ms  failed "
                        f"{dict(result.failures) or 0}; CPU ms per unit: {result.cpu_per_unit()}"
                        f"; web split {meter.split('web')} %"
                    )
        finally:
            for task in drains:
                task.cancel()
            await asyncio.gather(*(socket.close() for socket in watchers))
        return {"totals": totals, "per_round": per_round}


async def _drain(socket) -> None:
    with contextlib.suppress(Exception):
        async for _ in socket:
            pass


def throughput_rows(measured: dict) -> list[Row]:
    totals, per_round = measured["totals"], measured["per_round"]
    baseline = totals["baseline"].rate
    rows = []
    for name, label, unit, target in (
        ("http", "rider location over HTTP", "req/s", 0.6),
        ("ws", "rider location over an open WebSocket", "frames/s", 1.0),
        ("order", "quote + create order (cash)", "orders/s", 0.25),
    ):
        rate = totals[name].rate
        ratios = [
            subject / base
            for subject, base in zip(per_round[name], per_round["baseline"], strict=True)
            if base
        ]
        say(
            f"{name}: ratio per round {', '.join(f'{ratio:.2f}' for ratio in ratios)}; "
            f"failures {dict(totals[name].failures) or 0}"
        )
        ratio = rate / baseline if baseline else math.nan
        rows.append(
            Row(label, rate, unit, baseline, ratio, f"≥ {target:g}× baseline", ratio >= target)
        )
    return rows


# --- 5-6. 1,000 orders watched; health probes -------------------------------------------------


async def watch(
    port: int,
    trips,
    *,
    seconds: float,
    ping_seconds: float,
    meter: "measure.CpuMeter",
    profile_server=None,
) -> list[Row]:
    from websockets.exceptions import WebSocketException

    from bench.load import HttpClient, HttpError, http_request, ws_connect
    from core.gc_pauses import FLUSH_SECONDS

    sent: dict[tuple[str, datetime], float] = {}
    delays: list[float] = []
    acks: list[float] = []
    errors: list[str] = []
    measuring = asyncio.Event()
    stop = asyncio.Event()
    gate = asyncio.Semaphore(50)  # sockets opening at once, as apps reconnecting would

    async def open_socket(path: str, token: str):
        async with gate:
            return await ws_connect(f"ws://127.0.0.1:{port}{path}?token={token}")

    async def customer(socket) -> None:
        async for raw in socket:
            frame = json.loads(raw)
            if frame.get("type") != "location":
                continue
            key = (frame["order_id"], datetime.fromisoformat(frame["at"]))
            started = sent.pop(key, None)
            if started is not None and measuring.is_set():
                delays.append(time.perf_counter() - started)

    async def rider(trip, socket, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, ping_seconds))
        order_id = str(trip.order_id)
        while not stop.is_set():
            tick = time.perf_counter()
            recorded_at = datetime.now(UTC)
            frame = {"type": "location", "lat": trip.lat, "lng": trip.lng}
            sent[(order_id, recorded_at)] = time.perf_counter()
            try:
                await socket.send(json.dumps({**frame, "recorded_at": recorded_at.isoformat()}))
                reply = json.loads(await socket.recv())
            except WebSocketException as error:
                errors.append(f"rider socket: {type(error).__name__}: {error}")
                return
            if reply.get("type") != "location_ack":
                errors.append(reply.get("code", "?"))
            elif measuring.is_set():
                acks.append(time.perf_counter() - tick)
            await asyncio.sleep(max(0.0, ping_seconds - (time.perf_counter() - tick)))

    probes: dict[str, list[float]] = {"/health/": [], "/bench/json/": []}
    probe_failures: list[str] = []

    async def prober(path: str, rate: float) -> None:
        client = HttpClient("127.0.0.1", port)
        request = http_request("GET", path, port)
        while not stop.is_set():
            tick = time.perf_counter()
            try:
                status, _ = await client.request(request)
            except (OSError, HttpError) as error:
                status = type(error).__name__
            if measuring.is_set():
                probes[path].append(time.perf_counter() - tick)
                if status != 200:
                    probe_failures.append(f"{path} HTTP {status}")
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - tick)))

    say(f"watch: opening {len(trips)} customer sockets and {len(trips)} rider sockets")
    opened = time.monotonic()
    customers = await asyncio.gather(
        *(
            open_socket(f"/ws/delivery/{trip.order_id}/", access_token(trip.customer))
            for trip in trips
        )
    )
    riders = await asyncio.gather(
        *(open_socket("/ws/rider/", access_token(trip.rider_user)) for trip in trips)
    )
    say(f"watch: {2 * len(trips)} sockets open in {time.monotonic() - opened:.1f} s")
    rng = random.Random(5)
    tasks = [asyncio.create_task(customer(socket)) for socket in customers]
    tasks += [
        asyncio.create_task(rider(trip, socket, rng))
        for trip, socket in zip(trips, riders, strict=True)
    ]
    tasks += [asyncio.create_task(prober(path, 10.0)) for path in probes]
    await asyncio.sleep(ping_seconds + 2)  # every rider has pinged once; sockets settled
    scraper = HttpClient("127.0.0.1", port)

    async def collections() -> dict:
        # once the workers have moved the collections timed so far to /metrics
        await asyncio.sleep(FLUSH_SECONDS + 0.1)
        status, body = await scraper.request(http_request("GET", "/metrics", port))
        return measure.gc_pauses(body.decode()) if status == 200 else {}

    collected_before = await collections()
    measuring.set()
    meter.start()
    profilers = []
    if profile_server is not None:
        out_dir = profile_server.log_path.parent
        profilers = measure.profile(profile_server.worker_pids(), seconds, out_dir, "watch")
    await asyncio.sleep(seconds)
    used = meter.stop()
    measuring.clear()
    collected = measure.gc_pauses_summary(collected_before, await collections())
    for profiler in profilers:
        await asyncio.to_thread(profiler.wait)
    if profilers:
        say(f"profile of the watch:\n{measure.profile_summary(out_dir, 'watch')}")
    stop.set()
    await asyncio.sleep(1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(socket.close() for socket in customers + riders))

    expected = len(trips) * seconds / ping_seconds
    p99 = percentile(delays, 0.99) * 1000
    say(
        f"watch: {len(delays)} pings reached their customer in {seconds:.0f} s (about "
        f"{expected:.0f} expected); ping -> customer p50 {percentile(delays, 0.5) * 1000:.1f} "
        f"ms, p95 {percentile(delays, 0.95) * 1000:.1f} ms, p99 {p99:.1f} ms, max "
        f"{max(delays, default=math.nan) * 1000:.0f} ms; rider ack p99 "
        f"{percentile(acks, 0.99) * 1000:.1f} ms; errors {len(errors)} {errors[:3]}"
    )
    health = percentile(probes["/health/"], 0.99) * 1000
    bare = percentile(probes["/bench/json/"], 0.99) * 1000
    say(
        f"probes during the watch: /health/ p50 {percentile(probes['/health/'], 0.5) * 1000:.1f}"
        f" ms p99 {health:.1f} ms ({len(probes['/health/'])}), bare p50 "
        f"{percentile(probes['/bench/json/'], 0.5) * 1000:.1f} ms p99 {bare:.1f} ms; "
        f"failures {probe_failures[:5]}"
    )
    say(
        "watch: CPU while measured, in cores: "
        + ", ".join(f"{name} {cpu / seconds:.2f}" for name, cpu in used.items())
        + f"; the machine {100 * meter.machine_busy:.0f}% busy over its {os.cpu_count()} cores"
    )
    say(f"watch: garbage collections in the web workers while measured: {collected}")
    complete = len(delays) >= 0.9 * expected and not errors
    return [
        Row(
            f"ping → customer's WebSocket, {len(trips):,} orders watched (p99)",
            p99,
            "ms",
            None,
            None,
            "p99 ≤ 100 ms",
            p99 <= 100 and complete,
        ),
        Row(
            "/health/ under that load (p99)",
            health,
            "ms",
            bare,
            bare / health if health else math.nan,
            "p99 ≤ 50 ms",
            health <= 50 and not probe_failures,
        ),
    ]


# --- The run -----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    def number(value):
        if value is None or math.isnan(value):
            return "—"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"

    header = f"{'path':<52}{'value':>10} {'unit':<9}{'baseline':>10}{'ratio':>8}  {'target':<28}met"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.name:<52}{number(row.value):>10} {row.unit:<9}{number(row.baseline):>10}"
            f"{number(row.ratio):>8}  {row.target:<28}{'yes' if row.met else 'NO'}"
        )
    lines.append(
        "ratio: subject ÷ baseline for rates, baseline ÷ subject for times (higher is better)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per round and path")
    parser.add_argument("--warmup", type=float, default=1.5, help="before each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16, help="closed-loop users")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both servers")
    parser.add_argument("--watch-seconds", type=float, default=30.0)
    parser.add_argument("--watch-ping-seconds", type=float, default=5.0)
    parser.add_argument("--watched", type=int, default=WATCHED_ORDERS)
    parser.add_argument("--city-riders", type=int, default=CITY_RIDERS)
    parser.add_argument(
        "--only", default="", help="comma-separated subset: throughput,knn,watch (development)"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="a throwaway database (default: delivery_bench beside the developer's one)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the service under test (experiments; repeatable)",
    )
    parser.add_argument(
        "--profile",
        default="",
        choices=["", "baseline", "http", "ws", "order", "watch"],
        help="py-spy the web workers during this path's first round (or the watch's measured "
        "seconds); prints where time goes",
    )
    args = parser.parse_args()
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    started = time.monotonic()

    import uvloop

    from devstack.redis import RedisServer

    work_dir = Path(tempfile.mkdtemp(prefix="delivery-bench-"))
    redis = RedisServer(work_dir / "redis")
    redis.start()
    env = new_environment(redis.url, args.database_url)
    web = baseline = None
    rows: list[Row] = []
    try:
        prepare_database(env)
        setup_django(env)
        from bench import seed

        say(f"seeding {args.city_riders:,} city riders and {args.watched:,} riders on a delivery")
        seed.reset()
        area = seed.service_area()
        seed.city_riders(args.city_riders)
        trips = seed.trips(args.watched, area, random.Random(11))
        from django.db import connection

        connection.close()

        say(f"starting the service and the baseline, {args.workers} workers each")
        extra = dict(item.split("=", 1) for item in args.server_env)
        web = start_web("asgi", env.server_env(**extra), work_dir, workers=args.workers)
        baseline = start_web(
            "wsgi-sync",
            env.server_env(DB_POOL="0", CONN_MAX_AGE="600"),
            work_dir,
            workers=args.workers,
            sync_wsgi=True,
        )
        if not only or "knn" in only:
            knn_row = knn(random.Random(17), args.city_riders)
            connection.close()
        else:
            knn_row = None
        database = database_name(env.database_url)

        def meter(server):
            return measure.CpuMeter(
                {
                    "web": server.worker_pids,
                    "postgres": lambda: measure.postgres_pids(database),
                    "redis": lambda: [redis.process.pid],
                    "load": lambda: [os.getpid()],
                }
            )

        if not only or "throughput" in only:
            throughput = Throughput(
                baseline, web, trips, args.connections, profile=args.profile, meter=meter
            )
            measured = uvloop.run(
                throughput.run(rounds=args.rounds, seconds=args.seconds, warmup=args.warmup)
            )
            rows += throughput_rows(measured)
        baseline.stop()
        baseline = None
        if knn_row:
            rows.append(knn_row)
        if not only or "watch" in only:
            rows += uvloop.run(
                watch(
                    web.port,
                    trips[: args.watched],
                    seconds=args.watch_seconds,
                    ping_seconds=args.watch_ping_seconds,
                    meter=meter(web),
                    profile_server=web if args.profile == "watch" else None,
                )
            )
        workers = web.worker_pids()
        rss = {pid: measure.rss_mib(pid) for pid in workers}
        say(
            "web workers after the run: "
            + ", ".join(
                f"{pid} RSS {rss[pid]:.0f} MiB (PSS {measure.pss_mib(pid):.0f})" for pid in workers
            )
        )
        largest = max(rss.values(), default=math.nan)
        rows.append(
            Row(
                "memory of a web worker after the run (RSS)",
                largest,
                "MiB",
                None,
                None,
                "≤ 200 MiB",
                largest <= 200,
            )
        )
    finally:
        for server in (baseline, web):
            if server is not None:
                server.stop()
        redis.kill()
    measure.merge_results("bench", [row.as_dict() for row in rows])
    print(table(rows))
    elapsed = time.monotonic() - started
    where = measure.RESULTS.relative_to(ROOT)
    say(f"wrote {where} ('bench') in {elapsed:.0f} s; logs in {work_dir}")


if __name__ == "__main__":
    sys.exit(main())
