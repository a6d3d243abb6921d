"""`python -m bench.sockets_memory`: what a tracking socket costs a sockets worker, and whether
the worker gives it back.

    .venv/bin/python -m bench.sockets_memory [--sockets 500] [--cycles 5] [--hold 20]

Seeds the soak's city (bench.soak.seed_city: one customer per two live orders), starts one
sockets-role worker in production settings (bench.soak.start_web_tier), then --cycles times:
opens one /ws/delivery/<id>/ socket per live order (--sockets of them), holds them --hold
seconds, closes them all. The worker's RSS and its established connections are read from /proc
when it is idle before the first cycle and at the end of each phase.

The rise from idle to the first cycle's open, per socket, is what one costs. A worker holding
something per socket after it closes would be higher at each cycle's open than at the first:
the growth per cycle, divided by the sockets, is the leak per socket lifetime (0 is the target;
the soak's slope for the sockets worker cannot tell it from more sockets open).
Merges under "sockets_memory" into bench/results.json.
"""

import argparse
import asyncio
import random
import sys
import time

import websockets

from bench import measure, soak
from devstack.bench_env import say, throwaway_stack


async def open_all(ws_url: str, watches: list[tuple[str, str]]) -> list:
    """One tracking socket per (order id, access token), opened 50 at a time; each has read its
    snapshot frame."""
    sockets = []
    for start in range(0, len(watches), 50):

        async def one(order_id: str, token: str):
            socket = await websockets.connect(
                f"{ws_url}/ws/delivery/{order_id}/?token={token}", open_timeout=30
            )
            await asyncio.wait_for(socket.recv(), 30)
            return socket

        sockets += await asyncio.gather(*(one(*watch) for watch in watches[start : start + 50]))
    return sockets


def sample(pid: int) -> tuple[float, int]:
    return measure.rss_mib(pid), measure.established_connections(pid)


async def cycles(args, ws_url: str, pid: int, watches: list[tuple[str, str]]) -> list[dict]:
    rows = []
    await asyncio.sleep(2)
    rss, connections = sample(pid)
    rows.append({"phase": "idle", "rss_mib": rss, "connections": connections})
    for cycle in range(1, args.cycles + 1):
        sockets = await open_all(ws_url, watches)
        await asyncio.sleep(args.hold)
        rss, connections = sample(pid)
        rows.append({"phase": f"{cycle} open", "rss_mib": rss, "connections": connections})
        await asyncio.gather(*(socket.close() for socket in sockets))
        await asyncio.sleep(3)
        rss, connections = sample(pid)
        rows.append({"phase": f"{cycle} closed", "rss_mib": rss, "connections": connections})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    # what seed_city reads: no riders are needed, the customers watch their own orders
    args.riders, args.live_orders = 0, args.sockets
    args.customers = -(-args.sockets // soak.LIVE_PER_CUSTOMER)
    started = time.monotonic()

    with throwaway_stack("sockets-memory") as (work_dir, env):
        say(f"seeding: {args.customers} customers watching {args.sockets} live orders")
        tokens = soak.seed_city(args, 5000, random.Random(args.seed))
        access = {phone: token for phone, role, _, token in tokens if role == "customer"}
        from django.db import connection

        from orders.models import Order

        watches = [
            (str(order_id), access[phone])
            for order_id, phone in Order.objects.values_list("id", "customer__phone")
        ]
        connection.close()
        tier = soak.start_web_tier(env, work_dir, workers=1, sockets_workers=1)
        try:
            (pid,) = tier.worker_pids("sockets")
            rows = asyncio.run(cycles(args, tier.ws_url, pid, watches))
        finally:
            tier.stop()

    idle, first = rows[0]["rss_mib"], rows[1]["rss_mib"]
    opens = [row["rss_mib"] for row in rows if row["phase"].endswith("open")]
    per_socket_kib = (first - idle) * 1024 / args.sockets
    growth_per_cycle = (opens[-1] - opens[0]) / max(1, len(opens) - 1)
    lines = [
        f"Sockets memory: one sockets worker, {args.sockets} tracking sockets opened, held "
        f"{args.hold:g} s and closed, {args.cycles} times",
        f"  {'phase':<12}{'connections':>12}{'RSS MiB':>10}",
        *(f"  {r['phase']:<12}{r['connections']:>12}{r['rss_mib']:>10.1f}" for r in rows),
        f"  one socket costs {per_socket_kib:.0f} KiB (idle → first open); at each open after "
        f"the first, {growth_per_cycle:+.2f} MiB a cycle "
        f"({growth_per_cycle * 1024 / args.sockets:+.2f} KiB per socket lifetime)",
    ]
    result = {
        "sockets": args.sockets,
        "cycles": args.cycles,
        "hold_seconds": args.hold,
        "phases": rows,
        "kib_per_socket": round(per_socket_kib, 1),
        "mib_growth_per_cycle": round(growth_per_cycle, 2),
    }
    measure.merge_results("sockets_memory", result)
    print("\n".join(lines))
    say(f"merged under 'sockets_memory' in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
