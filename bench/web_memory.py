"""`python -m bench.web_memory`: whether a web worker gives back what its requests use.

    .venv/bin/python -m bench.web_memory [--rounds 8] [--requests 2000] [--concurrency 8]

The soak cannot tell: its web workers are recycled every 30-60 s (GUNICORN_MAX_REQUESTS), so
a slope fitted after their warm-up covers a few seconds of each. Here one web-role worker in
production settings, never recycled, serves --rounds rounds of --requests requests of the
apps' reads and writes: a customer's order list, order detail, tracking snapshot and a quote,
a rider's profile (the reads build an order with its quote and rider, a rider with its user:
Django caches a one-to-one pair on both sides, a reference cycle). After each round the worker's
RSS is read from /proc and its garbage collections from /metrics.

A worker keeping something per request grows round after round; one that returns it levels off
after the first rounds. Prints the growth per 1,000 requests over the rounds after --warmup
(least squares; 0 is the target) and merges under "web_memory" into bench/results.json.
"""

import argparse
import asyncio
import random
import sys
import time

import httpx

from bench import measure, soak
from devstack.bench_env import say, throwaway_stack
from devstack.web import start_web

CUSTOMER_READS = ("order list", "order detail", "tracking snapshot", "quote")


def quote_body(rng: random.Random, pickup: tuple[float, float]) -> dict:
    drop = (pickup[0] + rng.uniform(0.005, 0.015), pickup[1] + rng.uniform(0.005, 0.015))
    return {
        "pickup": {"lat": pickup[0], "lng": pickup[1], "address": "1 Pickup Rd"},
        "drop": {"lat": drop[0], "lng": drop[1], "address": "1 Drop St"},
        "package": {"description": "documents", "weight_grams": 500},
    }


async def one_round(client: httpx.AsyncClient, args, people: dict, rng: random.Random) -> dict:
    """--requests requests, --concurrency at a time: four in five a customer's, one a rider's.
    Returns the answers by status."""
    answers: dict[int, int] = {}
    queue: asyncio.Queue = asyncio.Queue()
    for _ in range(args.requests):
        queue.put_nowait(rng.random())

    async def call(draw: float) -> int:
        if draw < 0.2:
            token = rng.choice(people["riders"])
            headers = {"Authorization": f"Bearer {token}"}
            return (await client.get("/api/v1/riders/me/", headers=headers)).status_code
        token, order_id, pickup = rng.choice(people["orders"])
        headers = {"Authorization": f"Bearer {token}"}
        kind = CUSTOMER_READS[int((draw - 0.2) / 0.8 * len(CUSTOMER_READS))]
        if kind == "order list":
            answer = await client.get("/api/v1/orders/", headers=headers)
        elif kind == "order detail":
            answer = await client.get(f"/api/v1/orders/{order_id}/", headers=headers)
        elif kind == "tracking snapshot":
            answer = await client.get(f"/api/v1/delivery/{order_id}/", headers=headers)
        else:
            body = quote_body(rng, pickup)
            answer = await client.post("/api/v1/orders/quote/", json=body, headers=headers)
        return answer.status_code

    async def caller() -> None:
        while not queue.empty():
            status = await call(queue.get_nowait())
            answers[status] = answers.get(status, 0) + 1

    await asyncio.gather(*(caller() for _ in range(args.concurrency)))
    return answers


def old_collections(metrics: str) -> int:
    """Full (old-generation) collections the worker has run, from its /metrics."""
    return round(measure.gc_generations({}, measure.gc_pauses(metrics), 1.0)["old"][0])


async def rounds(args, base_url: str, pid: int, people: dict) -> list[dict]:
    rng = random.Random(args.seed)
    rows = []
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        rss = measure.rss_mib(pid)
        rows.append({"requests": 0, "rss_mib": rss, "old_collections": 0, "answers": {}})
        metrics = ""
        for number in range(1, args.rounds + 1):
            answers = await one_round(client, args, people, rng)
            await asyncio.sleep(1.5)  # the worker's collection timings reach /metrics
            metrics = (await client.get("/metrics")).text
            rows.append(
                {
                    "requests": number * args.requests,
                    "rss_mib": measure.rss_mib(pid),
                    "old_collections": old_collections(metrics),
                    "answers": answers,
                }
            )
            row = rows[-1]
            say(f"round {number}: RSS {row['rss_mib']:.1f} MiB, answers {answers}")
    return rows, measure.gc_generations_summary(measure.gc_pauses(metrics))


def seed_people(args) -> dict:
    """The soak's city; tokens of its riders and of each live order's customer."""
    tokens = soak.seed_city(args, 5000, random.Random(args.seed))
    access = {(phone, role): token for phone, role, _, token in tokens}
    from django.db import connection

    from orders.models import Order

    orders = [
        (access[(phone, "customer")], str(order_id), (pickup.y, pickup.x))
        for order_id, phone, pickup in Order.objects.values_list(
            "id", "customer__phone", "quote__pickup_location"
        )
    ]
    connection.close()
    riders = [token for (_, role), token in access.items() if role == "rider"]
    return {"orders": orders, "riders": riders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=2, help="rounds left out of the fit")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.rounds - args.warmup < 3:
        parser.error("--rounds must exceed --warmup by at least 3")
    args.riders, args.live_orders = 40, 200  # what seed_city reads
    args.customers = args.live_orders // soak.LIVE_PER_CUSTOMER
    started = time.monotonic()

    with throwaway_stack("web-memory") as (work_dir, env):
        say(f"seeding: {args.customers} customers, {args.live_orders} live orders")
        people = seed_people(args)
        # the web role as production runs it, but never recycled (server_env's default)
        server = start_web("web", env.server_env(), work_dir, workers=1)
        try:
            (pid,) = server.worker_pids()
            rows, collections = asyncio.run(rounds(args, server.base_url, pid, people))
        finally:
            server.stop()

    fitted = [(row["requests"] / 1000, row["rss_mib"]) for row in rows[1 + args.warmup :]]
    per_thousand = measure.least_squares_slope(fitted)
    lines = [
        f"Web memory: one web worker, never recycled, {args.rounds} rounds of {args.requests} "
        f"requests ({args.concurrency} at a time)",
        f"  {'requests':>9}{'RSS MiB':>10}{'full collections':>18}",
        *(
            f"  {row['requests']:>9}{row['rss_mib']:>10.1f}{row['old_collections']:>18}"
            for row in rows
        ),
        f"  after round {args.warmup}: {per_thousand:+.3f} MiB per 1,000 requests "
        f"(least squares over {len(fitted)} rounds; 0 is the target)",
        f"  garbage collections: {collections}",
    ]
    result = {
        "rounds": args.rounds,
        "requests_per_round": args.requests,
        "warmup_rounds": args.warmup,
        "phases": rows,
        "mib_per_thousand_requests": round(per_thousand, 3),
        "collections": collections,
    }
    measure.merge_results("web_memory", result)
    print("\n".join(lines))
    say(f"merged under 'web_memory' in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
