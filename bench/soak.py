"""`make soak`: the simulator's city on loopback, in production settings, for a few minutes.

    .venv/bin/python -m bench.soak [--minutes 3] [--riders 200] [--orders-per-minute 30] ...

Starts what `make bench` starts (devstack.bench_env: a throwaway redis-server, the
`<name>_bench` database, gunicorn + uvicorn in production settings), plus a Celery worker and
beat (dispatch is a task, its sweeps a beat schedule), with one difference: the web workers are
recycled at the production default (GUNICORN_MAX_REQUESTS 1000 ± 100), since the soak exists
to see what routine recycling does to the sockets. The city starts warm: --live-orders orders
searching a rider, three per customer, each watched over /ws/delivery/ from the first seconds
(the customers find them as after a killed run), and everyone signed in (tokens minted into a
token file of the run's own). Then the simulator (simulator.run, what `manage.py simulate`
runs) drives --riders riders and --customers customers for --minutes, while this process samples
every web and Celery process's memory and CPU from /proc every --sample-seconds.

Prints one table and merges it under "soak" into bench/results.json. Exits 0 whatever the
verdicts; only a crash is a failure.
"""

import argparse
import asyncio
import contextlib
import functools
import logging
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import measure
from devstack.bench_env import (
    Environment,
    database_name,
    new_environment,
    prepare_database,
    say,
    setup_django,
    wait_until_database_unused,
)
from devstack.web import WebServer, child_pids, start_web
from simulator.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
# devstack.bench_env's server_env relaxes a few limits for its closed-loop rows; the soak runs
# the production values (None: the variable is unset, so the setting's default applies),
# GUNICORN_MAX_REQUESTS and its jitter included.
PRODUCTION = {
    name: None
    for name in (
        "GUNICORN_MAX_REQUESTS",
        "GUNICORN_MAX_REQUESTS_JITTER",
        "RIDER_MIN_FIX_SECONDS",
        "ORDER_MAX_LIVE_PER_CUSTOMER",
        "THROTTLE_QUOTE_CUSTOMER",
        "THROTTLE_ORDER_CUSTOMER",
        "ORDER_MIN_DISTANCE_M",
    )
}
# Orders made live at the start per customer: ORDER_MAX_LIVE_PER_CUSTOMER (3) less one, so each
# customer can still book (at 3 every booking was a 429 until an order ended).
LIVE_PER_CUSTOMER = 2
CLOSE_NORMAL = 1000  # a tracking socket's order has ended: the designed end, not a drop
TARGET_PING_P99_MS = 100.0
TARGET_ENDPOINT_P99_MS = 1000.0
TARGET_SLOPE_MIB_PER_MIN = 1.0
MEMORY_GROUPS = ("web", "sockets", "celery")
TARGET_SCALE = (200, 500)  # riders, watchers (tracking sockets) the ping target is stated at
MIN_FIT_SECONDS = 30.0  # a process's memory slope needs this much after its warm-up


# --- The web tier --------------------------------------------------------------------------


@dataclass
class WebTier:
    """Where the apps reach the service: the API over `http_url`, the sockets over `ws_url`."""

    http_url: str
    ws_url: str
    servers: list[WebServer]

    def master_pids(self) -> list[int]:
        return [server.process.pid for server in self.servers]

    def worker_pids(self, role: str) -> list[int]:
        """The workers of one role's gunicorn ("web" or "sockets"); none for a role not run."""
        return [
            pid for server in self.servers if server.name == role for pid in server.worker_pids()
        ]

    def logs(self) -> list[Path]:
        return [server.log_path for server in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_web_tier(
    env: Environment, work_dir: Path, *, workers: int, sockets_workers: int
) -> WebTier:
    """The API's gunicorn (the web role, recycled at the production default) and the sockets'
    (the sockets role, never recycled by request count), as `make run` and the deployments
    run them; the web role's /api/config/ sends the apps, and the simulator, to the second
    (SOCKETS_URL). With `sockets_workers` 0, the web role serves the sockets too."""
    if sockets_workers == 0:
        server = start_web("web", env.server_env(**PRODUCTION), work_dir, workers=workers)
        ws_url = server.base_url.replace("http://", "ws://", 1)
        return WebTier(http_url=server.base_url, ws_url=ws_url, servers=[server])
    sockets = start_web(
        "sockets",
        env.server_env(**PRODUCTION, SERVER_ROLE="sockets"),
        work_dir,
        workers=sockets_workers,
    )
    ws_url = sockets.base_url.replace("http://", "ws://", 1)
    try:
        web = start_web(
            "web", env.server_env(**PRODUCTION, SOCKETS_URL=ws_url), work_dir, workers=workers
        )
    except BaseException:
        sockets.stop()
        raise
    return WebTier(http_url=web.base_url, ws_url=ws_url, servers=[web, sockets])


# --- Celery --------------------------------------------------------------------------------


def start_celery(env: Environment, work_dir: Path, *, concurrency: int) -> list:
    """A worker on every queue (as Procfile.dev's `worker`) and beat, in production settings."""
    from devstack.celery import CeleryProcess, beat_command, worker_command

    celery_env = env.server_env(
        **PRODUCTION,
        REMAP_SIGTERM="SIGQUIT",
        IS_PRIMARY="1",
        WORKER_LIVENESS_DIR=str(work_dir / "liveness"),
    )
    worker = CeleryProcess(
        worker_command("soak", concurrency=concurrency), celery_env, work_dir / "celery-worker.log"
    )
    beat = CeleryProcess(beat_command(), celery_env, work_dir / "celery-beat.log")
    processes = [worker, beat]
    try:
        worker.wait_for_output(" ready.", 90)
    except BaseException:
        for process in processes:
            process.close()
        raise
    return processes


# --- The warm city -------------------------------------------------------------------------


def seed_city(args, zone_radius_m: float, rng: random.Random) -> list[tuple[str, str, str, str]]:
    """Empties the benchmark database; makes the service area, every simulated rider and
    customer signed in (tokens minted as a first OTP sign-in would issue them), and
    --live-orders cash orders searching a rider, LIVE_PER_CUSTOMER per customer, in the
    simulator's zone. Returns (phone, role, refresh, access) for the token file."""

    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import User
    from bench import seed
    from orders.models import Order, OrderStatus, Quote
    from simulator import database
    from simulator.customers import customer_phone
    from simulator.geo import Zone, metres_between
    from simulator.riders import rider_phone

    seed.reset()
    area = seed.service_area()
    zone = Zone.inside_bbox(area.area.extent, zone_radius_m)  # as the simulator finds it
    tokens = []
    for phones, role in (
        ([rider_phone(i) for i in range(args.riders)], "rider"),
        ([customer_phone(i) for i in range(args.customers)], "customer"),
    ):
        for phone in phones:
            access, refresh = database.mint_tokens(phone, role)
            tokens.append((phone, role, refresh, access))
    customers = list(
        User.objects.filter(phone__in=[customer_phone(i) for i in range(args.customers)])
    )
    customers.sort(key=lambda user: user.phone)
    now = timezone.now()
    quotes, orders = [], []
    for index in range(args.live_orders):
        customer = customers[index // LIVE_PER_CUSTOMER]
        pickup = zone.random_point(rng)
        drop = zone.random_point_near(rng, pickup, 1000, 4000)
        quote, order = seed.cash_order(
            customer=customer,
            area=area,
            pickup=pickup,
            drop=drop,
            distance_m=round(metres_between(pickup, drop)),
            status=OrderStatus.SEARCHING_RIDER,
            code=f"{rng.randrange(10_000):04d}",
            now=now,
        )
        quotes.append(quote)
        orders.append(order)
    with transaction.atomic():
        Quote.objects.bulk_create(quotes, batch_size=1000)
        Order.objects.bulk_create(orders, batch_size=1000)
    # Planner statistics, as a running database has them: straight after the seeding the
    # planner took 1 searching order for 457 and a rider's rematch search ran 355 ms.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return tokens


# --- Sampling /proc ------------------------------------------------------------------------


@dataclass
class Sampler:
    """RSS of every web worker and Celery process, and CPU seconds of each group's processes,
    every `every` seconds while the simulation runs."""

    groups: dict  # name -> () -> pids; MEMORY_GROUPS are sampled for memory too
    every: float
    rss: dict = field(default_factory=dict)  # (group, pid) -> [(seconds since start, MiB)]
    # (group, pid) -> [(seconds since start, established TCP connections)], sockets workers only
    connections: dict = field(default_factory=dict)
    first_seen: dict = field(default_factory=dict)  # (group, pid) -> seconds since start
    cpu_first: dict = field(default_factory=dict)  # (group, pid) -> CPU s when first seen
    cpu_last: dict = field(default_factory=dict)  # (group, pid) -> CPU s when last seen
    started: float = 0.0
    machine_start: tuple = (0, 0)
    machine_end: tuple = (0, 0)
    web_pids_at_start: int = 0

    def sample(self, *, initial: bool = False) -> None:
        at = time.monotonic() - self.started
        for group, pids in self.groups.items():
            for pid in pids():
                key = (group, pid)
                used = measure.cpu_seconds(pid)
                if key not in self.first_seen:
                    self.first_seen[key] = at
                    # a process born during the run has used its CPU in the run
                    self.cpu_first[key] = used if initial else 0.0
                if used:
                    self.cpu_last[key] = used
                if group in MEMORY_GROUPS:
                    with contextlib.suppress(OSError, ValueError):
                        self.rss.setdefault(key, []).append((at, measure.rss_mib(pid)))
                if group == "sockets":
                    with contextlib.suppress(OSError, ValueError):
                        count = measure.established_connections(pid)
                        self.connections.setdefault(key, []).append((at, count))

    async def run(self, stop: asyncio.Event) -> None:
        self.started = time.monotonic()
        self.machine_start = measure.machine_busy_and_total()
        self.sample(initial=True)
        self.web_pids_at_start = sum(1 for group, _ in self.first_seen if group == "web")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
            await asyncio.to_thread(self.sample)
        self.machine_end = measure.machine_busy_and_total()

    def cpu(self, group: str) -> float:
        return sum(
            self.cpu_last.get(key, 0.0) - self.cpu_first.get(key, 0.0)
            for key in self.first_seen
            if key[0] == group
        )

    def machine_busy(self) -> float:
        busy = self.machine_end[0] - self.machine_start[0]
        total = self.machine_end[1] - self.machine_start[1]
        return busy / total if total else math.nan

    def slopes(self, warmup: float, until: float) -> dict:
        """MiB per minute per process, least squares over its samples after the run's warm-up
        and its own (a recycled worker's successor warms up too), up to `until`; only the
        processes with MIN_FIT_SECONDS of such samples."""
        found = {}
        for key, points in self.rss.items():
            begin = max(warmup, self.first_seen[key] + warmup)
            kept = [(at / 60, mib) for at, mib in points if begin <= at <= until]
            if len(kept) >= 3 and (kept[-1][0] - kept[0][0]) * 60 >= MIN_FIT_SECONDS:
                found[key] = measure.least_squares_slope(kept)
        return found

    def memory_per_connection(self, warmup: float, until: float) -> dict:
        """Per sockets worker, over the slope's window: its connections and RSS at the window's
        two ends, and RSS fitted to time and connections together (measure.least_squares_two):
        MiB per minute with the connections held level, KiB per connection more."""
        found = {}
        for key, counts in self.connections.items():
            begin = max(warmup, self.first_seen[key] + warmup)
            rss = dict(self.rss.get(key, []))
            rows = [(at / 60, n, rss[at]) for at, n in counts if begin <= at <= until and at in rss]
            if len(rows) < 4:
                continue
            fit = measure.least_squares_two(rows)
            found[key] = {
                "connections": [rows[0][1], rows[-1][1]],
                "rss_mib": [round(rows[0][2], 1), round(rows[-1][2], 1)],
                "mib_per_min_connections_level": fit[0] if fit else math.nan,
                "kib_per_connection": fit[1] * 1024 if fit else math.nan,
            }
        return found


# --- The run -------------------------------------------------------------------------------


def verdict(met: bool | None) -> str:
    return "—" if met is None else ("PASS" if met else "FAIL")


def ms_text(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0f}"


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1) if not math.isnan(seconds) else math.nan


def _nan_to_none(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 3)
    if isinstance(value, dict):
        return {str(key): _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(item) for item in value]
    return value


def report(args, tier: WebTier, simulation, sampler: Sampler, marks: dict) -> dict:
    """The table and the results. The targets on latencies and delays take those recorded
    after the warm-up (the whole city starting at once: 200 riders going online, 500 sockets
    opening, 500 orders dispatched) and before the wind-down (every order cancelled and every
    rider going offline at once, as no city would); both are given beside them. Socket
    closes, socket-hours and CPU cover the whole run, wind-down included."""
    from simulator.customers import FIX_TO_TRACKING

    stats = simulation.stats
    who = ("rider", "tracking")
    hours = {kind: stats.socket_seconds[kind] / 3600 for kind in who}
    drops = {kind: {} for kind in who}
    for (kind, code), count in stats.closed_by_server.items():
        if not (kind == "tracking" and code == CLOSE_NORMAL):
            drops[kind][code] = drops[kind].get(code, 0) + count
    drop_total = {kind: sum(drops[kind].values()) for kind in who}
    per_hour = {kind: drop_total[kind] / hours[kind] if hours[kind] else math.nan for kind in who}
    measured = marks["stopped"] - marks["started"]
    end, warm = marks["latencies"], marks["warm"]
    every_delay = stats.delays[FIX_TO_TRACKING][: end["ping"]]
    delays = every_delay[warm["ping"] :]
    ping = {share: percentile(delays, share) for share in (0.5, 0.95, 0.99)}
    ping_whole_p99 = percentile(every_delay, 0.99)
    endpoints = {}
    wind_down = {}
    for kind, everything in sorted(stats.latencies.items()):
        whole = everything[: end.get(kind, 0)]
        values = whole[warm.get(kind, 0) :]
        if len(everything) > len(whole):
            wind_down[kind] = percentile(everything[len(whole) :], 0.99)
        if not whole:
            continue
        answers = {
            str(status or "no answer"): count
            for (name, status), count in sorted(stats.statuses.items())
            if name == kind
        }
        endpoints[kind] = {
            "count": len(values),
            "p50_ms": ms(percentile(values, 0.5)),
            "p99_ms": ms(percentile(values, 0.99)),
            "count_with_warmup": len(whole),
            "p99_ms_with_warmup": ms(percentile(whole, 0.99)),
            "answers_whole_run": answers,
        }
    timed = {kind: row for kind, row in endpoints.items() if row["count"]}
    worst_endpoint = max(
        timed.items(), key=lambda item: item[1]["p99_ms"], default=("—", {"p99_ms": math.nan})
    )
    warmup = args.warmup_seconds
    slopes = sampler.slopes(warmup, marks["stopped"])
    per_connection = sampler.memory_per_connection(warmup, marks["stopped"])
    groups_run = [group for group in MEMORY_GROUPS if any(k[0] == group for k in sampler.rss)]
    # A sockets worker's RSS follows its sockets, and the run adds sockets (the watchers of the
    # orders booked meanwhile): its verdict is its slope with the connections held level, where
    # the fit could tell the two apart. bench.sockets_memory measures what a socket costs.
    for (group, pid), row in per_connection.items():
        if not math.isnan(row["mib_per_min_connections_level"]):
            slopes[(group, pid)] = row["mib_per_min_connections_level"]
    worst_slope = {}
    for group in groups_run:
        mine = {pid: slope for (name, pid), slope in slopes.items() if name == group}
        pid = max(mine, key=mine.get, default=None)
        worst_slope[group] = (pid, mine[pid] if pid else math.nan, len(mine))
    final_rss = {
        f"{group} {pid}": points[-1][1] for (group, pid), points in sampler.rss.items() if points
    }
    wall = max(1e-9, time.monotonic() - sampler.started)  # the sampler ran as long as the sim
    cpus = os.cpu_count() or 1
    cpu = {name: sampler.cpu(name) / wall for name in sampler.groups}
    # the machine's busy cores less this run's processes: other work sharing the machine (and
    # the processes of this run that came and went between two samples)
    others = max(0.0, sampler.machine_busy() * cpus - sum(cpu.values()))
    web_seen = sum(1 for group, _ in sampler.first_seen if group == "web")
    recycled = web_seen - sampler.web_pids_at_start
    riders_scale = args.riders
    tracking_peak = stats.sockets_peak["tracking"]
    at_scale = riders_scale >= TARGET_SCALE[0] and tracking_peak >= TARGET_SCALE[1]

    all_drops = drop_total["rider"] + drop_total["tracking"]
    ping_met = (not math.isnan(ping[0.99])) and ping[0.99] * 1000 <= TARGET_PING_P99_MS
    endpoint_met = bool(timed) and all(
        row["p99_ms"] <= TARGET_ENDPOINT_P99_MS for row in timed.values()
    )
    fitted = [slope for _, slope, count in worst_slope.values() if count]
    memory_met = (
        None
        if not fitted
        else all(slope <= TARGET_SLOPE_MIB_PER_MIN for slope in fitted)
        and all(count for _, _, count in worst_slope.values())
    )
    targets = [
        ("server-initiated drops, rider + tracking (no deploy here)", "0", all_drops == 0),
        (
            f"ping → customer p99, {TARGET_SCALE[0]} riders, {TARGET_SCALE[1]} watchers"
            + ("" if at_scale else " (below)"),
            f"≤ {TARGET_PING_P99_MS:g} ms",
            ping_met,
        ),
        (
            "every endpoint's p99 after the warm-up",
            f"≤ {TARGET_ENDPOINT_P99_MS / 1000:g} s",
            endpoint_met,
        ),
        (
            "memory slope per process after warm-up (worst)",
            f"≤ {TARGET_SLOPE_MIB_PER_MIN:g} MiB/min",
            memory_met,
        ),
    ]

    def codes(kind):
        return ", ".join(f"{code}: {n}" for code, n in sorted(drops[kind].items())) or "none"

    c = simulation.config
    lines = [
        f"City soak: {measured / 60:.1f} min measured (memory after a {warmup:.0f} s warm-up), "
        f"then the simulator's wind-down; {cpus} cores, the simulator on the same ones",
        f"  scale: {c.riders} riders ({c.http_share:.0%} pinging over HTTP, a fix every "
        f"{c.ping_seconds:g} s), {c.customers} customers, {args.live_orders} orders live at the "
        f"start + {c.orders_per_minute:g} booked/min; sockets open at once at most: rider "
        f"{stats.sockets_peak['rider']}, tracking {tracking_peak}",
        f"  web: {tier.http_url}, gunicorn {args.web_workers} uvicorn workers recycled at the "
        f"production default (GUNICORN_MAX_REQUESTS 1000 ± 100); sockets: {tier.ws_url}, "
        f"{args.sockets_workers or 'served by web:'} sockets-role workers; {recycled} workers "
        f"replaced; Celery: a worker ({args.celery_concurrency} processes) and beat",
        "",
        f"  {'measure':<44}{'rider':>14}{'tracking':>14}",
        f"  {'socket-hours':<44}{hours['rider']:>14.2f}{hours['tracking']:>14.2f}",
        f"  {'server-initiated drops':<44}{drop_total['rider']:>14}{drop_total['tracking']:>14}",
        f"  {'  by close code':<44}{codes('rider'):>14}{codes('tracking'):>14}",
        f"  {'drops per socket-hour':<44}{per_hour['rider']:>14.1f}{per_hour['tracking']:>14.1f}",
        f"  {'client-side failures (by code)':<44}"
        + "".join(
            f"{', '.join(f'{code}: {n}' for (k, code), n in sorted(stats.closed_by_client_error.items()) if k == kind) or 'none':>14}"  # noqa: E501
            for kind in who
        ),
        "",
        f"  ping → customer (fix to tracking socket) after the warm-up: {len(delays)} frames, "
        f"p50 {ms(ping[0.5])} ms, p95 {ms(ping[0.95])} ms, p99 {ms(ping[0.99])} ms (with the "
        f"warm-up: {len(every_delay)} frames, p99 {ms(ping_whole_p99)} ms)",
        f"  errors: {sum(stats.errors.values())} in all, 5xx {stats.server_errors}, calls "
        f"failed (5xx or no answer) {stats.failed_calls} of {stats.calls}",
        "",
        "  endpoints after the warm-up (and with it); answers over the whole run:",
        f"  {'endpoint':<26}{'count':>7}{'p50 ms':>9}{'p99 ms':>9}{'(count':>9}{'p99 ms)':>9}"
        "  answers",
    ]
    for kind, row in endpoints.items():
        answers = ", ".join(f"{status}: {n}" for status, n in row["answers_whole_run"].items())
        lines.append(
            f"  {kind:<26}{row['count']:>7}{ms_text(row['p50_ms']):>9}{ms_text(row['p99_ms']):>9}"
            f"{row['count_with_warmup']:>9}{ms_text(row['p99_ms_with_warmup']):>9}  {answers}"
        )
    if wind_down:
        kind = max(wind_down, key=wind_down.get)
        calls = sum(len(stats.latencies[k]) - marks["latencies"].get(k, 0) for k in wind_down)
        lines.append(
            f"  (left out above: the wind-down's {calls} calls, all at once; worst p99 "
            f"{ms(wind_down[kind]):.0f} ms, {kind})"
        )
    lines += [
        "",
        "  memory (RSS), slope after warm-up, least squares, worst process of its group (a"
        " sockets worker's with its connections held level, fitted below):",
    ]
    for group in groups_run:
        pid, slope, count = worst_slope[group]
        rss_now = [mib for key, mib in final_rss.items() if key.startswith(group + " ")]
        lines.append(
            f"    {group:<7} {f'{slope:+.2f} MiB/min (pid {pid})' if count else 'n/a':<28} "
            f"over {count} process(es) with ≥ {MIN_FIT_SECONDS:.0f} s after warm-up; largest RSS "
            f"at the end {max(rss_now, default=math.nan):.0f} MiB ({len(rss_now)} processes seen)"
        )
    for (_, pid), row in sorted(per_connection.items()):
        level, per = row["mib_per_min_connections_level"], row["kib_per_connection"]
        fitted_text = (
            f"fitted on time and connections: {level:+.2f} MiB/min with the connections level, "
            f"{per:.0f} KiB per connection"
            if not math.isnan(level)
            else "time and connections moved together: not told apart"
        )
        lines.append(
            f"    sockets worker {pid}: connections {row['connections'][0]} → "
            f"{row['connections'][1]}, RSS {row['rss_mib'][0]:.0f} → {row['rss_mib'][1]:.0f} MiB; "
            + fitted_text
        )
    lines += [
        f"  CPU: the machine {100 * sampler.machine_busy():.0f}% busy over its {cpus} cores; in "
        "cores: "
        + ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())
        + f"; everything else on the machine {others:.2f}",
        "",
        f"  {'target':<58}{'limit':<14}{'measured':<34}verdict",
    ]
    measured_text = [
        f"{all_drops} ({per_hour['rider'] if hours['rider'] else 0:.1f} and "
        f"{per_hour['tracking'] if hours['tracking'] else 0:.1f} per socket-h)",
        f"{ms(ping[0.99])} ms",
        f"{worst_endpoint[1]['p99_ms']} ms ({worst_endpoint[0]})",
        ", ".join(f"{g} {s:+.2f}" for g, (_, s, n) in worst_slope.items() if n) or "too short",
    ]
    for (name, limit, met), text in zip(targets, measured_text, strict=True):
        lines.append(f"  {name:<58}{limit:<14}{text:<34}{verdict(met)}")
    table = "\n".join(lines)
    result = {
        "measured_seconds": measured,
        "warmup_seconds": warmup,
        "scale": {
            "riders": c.riders,
            "customers": c.customers,
            "live_orders_at_start": args.live_orders,
            "orders_per_minute": c.orders_per_minute,
            "ping_seconds": c.ping_seconds,
            "http_share": c.http_share,
            "sockets_peak": dict(stats.sockets_peak),
            "web_workers": args.web_workers,
            "sockets_workers": args.sockets_workers,
            "celery_concurrency": args.celery_concurrency,
            "cores": cpus,
        },
        "urls": {"http": tier.http_url, "ws": tier.ws_url},
        "web_workers_recycled": recycled,
        "socket_hours": hours,
        "server_initiated_drops": {
            kind: {str(k): v for k, v in drops[kind].items()} for kind in who
        },
        "drops_per_socket_hour": per_hour,
        "server_closes_all": {f"{k} {code}": n for (k, code), n in stats.closed_by_server.items()},
        "client_side_failures": {
            f"{k} {code}": n for (k, code), n in stats.closed_by_client_error.items()
        },
        "ping_to_customer_ms": {
            "count": len(delays),
            "p50": ms(ping[0.5]),
            "p95": ms(ping[0.95]),
            "p99": ms(ping[0.99]),
            "count_with_warmup": len(every_delay),
            "p99_with_warmup": ms(ping_whole_p99),
        },
        "endpoints": endpoints,
        "errors": {"all": sum(stats.errors.values()), "5xx": stats.server_errors},
        "wind_down_p99_ms": {kind: ms(value) for kind, value in wind_down.items()},
        "memory_slope_mib_per_min": {
            f"{group} {pid}": slope for (group, pid), slope in slopes.items()
        },
        "memory_slope_worst": {
            group: {"pid": pid, "mib_per_min": slope, "processes_fitted": count}
            for group, (pid, slope, count) in worst_slope.items()
        },
        "rss_end_mib": final_rss,
        "sockets_memory_per_connection": {
            str(pid): row for (_, pid), row in per_connection.items()
        },
        "cpu": {
            "machine_busy": sampler.machine_busy(),
            "cores": cpus,
            "per_group_cores": cpu,
            "everything_else_cores": others,
        },
        "targets": [
            {"name": name, "limit": limit, "measured": text, "met": met}
            for (name, limit, met), text in zip(targets, measured_text, strict=True)
        ],
        "at_stated_scale": at_scale,
    }
    return {"table": table, "result": _nan_to_none(result)}


PROFILE_WINDOW_SECONDS = 20.0  # web workers are recycled every 30-60 s: py-spy each anew
# Rider online is not among them: the soak's riders go online in the warm-up, all at once.
PROFILED_VIEWS = ("OrderCancelApi", "RiderOfferAcceptApi")


async def profile_web(tier: WebTier, seconds: float, out_dir: Path, simulation) -> None:
    """py-spy on the web workers, every thread, waiting ones included, for `seconds` in
    windows: a worker recycled meanwhile is replaced in the next window."""
    window, left = 0, seconds
    while left > 0 and simulation.running():
        window += 1
        length = min(PROFILE_WINDOW_SECONDS, left)
        pids = tier.worker_pids("web")
        processes = measure.profile(pids, length, out_dir, f"web-{window}", waits=True)
        for process in processes:
            await asyncio.to_thread(process.wait)
        left -= length


def profiles_summary(out_dir: Path) -> str:
    return "\n".join(
        f"  profile of {view} (every thread, waiting included):\n"
        + measure.profile_summary(out_dir, "web", 14, within=view)
        for view in PROFILED_VIEWS
    )


async def drive(simulation, sampler: Sampler, warmup: float, measured=None) -> dict:
    """Runs the simulation while the sampler samples; returns when the measured part began and
    ended (seconds since the sampler's start: the simulator's clock starting, and its wind-down
    starting) and how many latencies and delays had been recorded by the end of the warm-up
    and by its end. `measured()`, if given, runs from the end of the warm-up (a profile)."""
    from simulator.customers import FIX_TO_TRACKING

    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    running = asyncio.create_task(simulation.run())
    marks = {}
    try:
        while simulation.started_at is None and not running.done():
            await asyncio.sleep(0.1)
        marks["started"] = time.monotonic() - sampler.started
        stats = simulation.stats

        def counts(name: str) -> None:
            marks[name] = {kind: len(values) for kind, values in stats.latencies.items()}
            marks[name]["ping"] = len(stats.delays[FIX_TO_TRACKING])

        counts("begun")
        while (
            time.monotonic() - sampler.started < warmup
            and simulation.running()
            and not running.done()
        ):
            await asyncio.sleep(0.1)
        counts("warm")
        extra = asyncio.create_task(measured()) if measured else None
        while simulation.running() and not running.done():
            await asyncio.sleep(0.1)
        if extra is not None:
            await extra
        marks["stopped"] = time.monotonic() - sampler.started
        counts("latencies")
        await running
    finally:
        stop.set()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await sampling
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="the simulator's run")
    parser.add_argument("--riders", type=int, default=200)
    parser.add_argument(
        "--live-orders",
        type=int,
        default=500,
        help="orders searching a rider at the start, each watched (default 500)",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=0,
        help=f"default: enough for --live-orders at {LIVE_PER_CUSTOMER} live orders each",
    )
    parser.add_argument("--orders-per-minute", type=float, default=30.0)
    parser.add_argument("--ping-seconds", type=float, default=4.0)
    parser.add_argument("--http-share", type=float, default=0.2)
    parser.add_argument(
        "--cancel-share",
        type=float,
        default=0.1,
        help="bookings their customer cancels 5-60 s later, unless picked up (default 0.1)",
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="py-spy the web workers this long after the warm-up; prints where order cancel "
        "and offer accept spend their time",
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=None,
        help="left out of the memory slopes (default: 60, at most a third of the run)",
    )
    parser.add_argument("--sample-seconds", type=float, default=3.0)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument(
        "--sockets-workers",
        type=int,
        default=1,
        help="workers of the sockets role (0: the web role serves the sockets, as before)",
    )
    parser.add_argument("--celery-concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url",
        default="",
        help="a throwaway database (default: <name>_bench beside the developer's one)",
    )
    args = parser.parse_args()
    if not args.customers:
        args.customers = max(1, math.ceil(args.live_orders / LIVE_PER_CUSTOMER))
    if args.live_orders > args.customers * LIVE_PER_CUSTOMER:
        parser.error(f"--live-orders needs at least {LIVE_PER_CUSTOMER} per --customers")
    if args.warmup_seconds is None:
        args.warmup_seconds = min(60.0, args.minutes * 60 / 3)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="sim: %(message)s")
    started = time.monotonic()

    from devstack.redis import RedisServer

    work_dir = Path(tempfile.mkdtemp(prefix="delivery-soak-"))
    redis = RedisServer(work_dir / "redis")
    redis.start()
    env = new_environment(redis.url, args.database_url)
    tier = None
    celery = []
    try:
        prepare_database(env)
        wait_until_database_unused(env)
        os.environ["SMS_PROVIDER"] = "dummy"  # the simulator's own check (simulator.database)
        setup_django(env)
        from dataclasses import replace

        from simulator.api import TokenStore
        from simulator.run import Config, Simulation

        config = Config(
            riders=args.riders,
            customers=args.customers,
            orders_per_minute=args.orders_per_minute,
            minutes=args.minutes,
            seed=args.seed,
            ping_seconds=args.ping_seconds,
            http_share=args.http_share,
            cancel_share=args.cancel_share,
            report_seconds=30.0,
        )
        problems = config.problems()
        if problems:
            parser.error("; ".join(problems))
        say(
            f"seeding: {args.riders} riders and {args.customers} customers signed in, "
            f"{args.live_orders} orders searching a rider"
        )
        tokens = seed_city(args, config.radius_km * 1000, random.Random(args.seed))
        from django.db import connection

        connection.close()
        say(f"starting the web tier ({args.web_workers} workers), a Celery worker and beat")
        tier = start_web_tier(
            env, work_dir, workers=args.web_workers, sockets_workers=args.sockets_workers
        )
        celery = start_celery(env, work_dir, concurrency=args.celery_concurrency)
        store = TokenStore(work_dir / "tokens.json", tier.http_url)
        for phone, role, refresh, access in tokens:
            store.put(phone, role, refresh, access)
        store.save()
        config = replace(config, url=tier.http_url, token_file=store.path)

        database = database_name(env.database_url)

        def celery_pids() -> list[int]:
            pids = []
            for process in celery:
                if process.process.poll() is None:
                    pids += [process.pid, *child_pids(process.pid)]
            return pids

        sampler = Sampler(
            {
                "web": lambda: tier.worker_pids("web"),
                "sockets": lambda: tier.worker_pids("sockets"),
                "web master": tier.master_pids,
                "celery": celery_pids,
                "postgres": lambda: measure.postgres_pids(database),
                "redis": lambda: [redis.process.pid],
                "simulator": lambda: [os.getpid()],
            },
            every=args.sample_seconds,
        )
        simulation = Simulation(config, say=lambda line: print(f"sim: {line}", file=sys.stderr))
        say(f"the city for {args.minutes:g} min (logs in {work_dir})")
        measured = (
            functools.partial(profile_web, tier, args.profile, work_dir, simulation)
            if args.profile
            else None
        )
        marks = asyncio.run(drive(simulation, sampler, args.warmup_seconds, measured))
        print(simulation.summary(), file=sys.stderr)
        out = report(args, tier, simulation, sampler, marks)
        if args.profile:
            out["table"] += "\n\n" + profiles_summary(work_dir)
    finally:
        if tier is not None:
            tier.stop()
        for process in celery:
            process.close()
        redis.kill()
    measure.merge_results("soak", out["result"])
    print(out["table"])
    say(
        f"merged under 'soak' into {measure.RESULTS.relative_to(ROOT)} in "
        f"{time.monotonic() - started:.0f} s; logs in {work_dir}"
    )


if __name__ == "__main__":
    sys.exit(main())
