"""A realistic load on the running stack: riders on the road, customers booking and watching.

One asyncio loop plays every app at once, over the public HTTP and WebSocket API only:
- riders (seeded approved and online) keep a /ws/rider/ socket, send a position every
  PING_SECONDS (half over that socket, half over HTTP), accept the offers pushed to them, ride
  to the pickup and the drop at RIDER_SPEED_MPS, and take every delivery step up to `deliver`
  with the customer's code;
- some riders start the run in the middle of a delivery (seeded orders), watched by their
  customers over /ws/delivery/<id>/;
- new customers sign in by OTP (the code read from the dummy SMS outbox), ask for a quote,
  book a cash-on-delivery order with an Idempotency-Key, and watch it until it ends.
Every request's latency and outcome is recorded; `Report` sums them up.
"""

import asyncio
import contextlib
import json
import math
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import websockets.asyncio.client
from websockets.exceptions import ConnectionClosed

PING_SECONDS = 3.0
RIDER_SPEED_MPS = 15.0  # 54 km/h, a scooter in light traffic
ARRIVAL_METRES = 120.0  # inside the 200 m geofence, with room for GPS wander
METRES_PER_DEGREE = 111_320.0
CENTRE = (12.9716, 77.5946)  # MG Road, Bengaluru


def metres_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    dlat = (b[0] - a[0]) * METRES_PER_DEGREE
    dlng = (b[1] - a[1]) * METRES_PER_DEGREE * math.cos(math.radians(a[0]))
    return math.hypot(dlat, dlng)


def step_towards(here: tuple[float, float], there: tuple[float, float], metres: float):
    distance = metres_between(here, there)
    if distance <= metres:
        return there
    share = metres / distance
    return (here[0] + (there[0] - here[0]) * share, here[1] + (there[1] - here[1]) * share)


def point_near(
    centre: tuple[float, float], max_metres: float, rng: random.Random, at_least: float = 0
):
    angle = rng.uniform(0, 2 * math.pi)
    metres = rng.uniform(at_least, max_metres)
    dlat = metres * math.cos(angle) / METRES_PER_DEGREE
    dlng = metres * math.sin(angle) / (METRES_PER_DEGREE * math.cos(math.radians(centre[0])))
    return (centre[0] + dlat, centre[1] + dlng)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Report:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    failures: list[str] = field(default_factory=list)  # transport errors, 5xx, surprises
    frames: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ping_to_watcher: list[float] = field(default_factory=list)
    orders_booked: list[str] = field(default_factory=list)
    orders_delivered: set[str] = field(default_factory=set)
    watchers_peak: int = 0
    reconnects: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retried: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    drop_reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _watching: int = 0

    def record(self, kind: str, seconds: float, status: int) -> None:
        self.latencies[kind].append(seconds)
        self.statuses[(kind, status)] += 1
        if status >= 500:
            self.failures.append(f"{kind}: HTTP {status}")

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(count for (_, status), count in self.statuses.items() if status >= 500)

    @property
    def error_rate(self) -> float:
        failed = self.server_errors + sum(
            count for (_, status), count in self.statuses.items() if status == 0
        )
        return failed / max(1, self.requests)

    @staticmethod
    def percentiles(values: list[float]) -> tuple[float, float, float]:
        if not values:
            return (math.nan, math.nan, math.nan)
        ordered = sorted(values)

        def at(share: float) -> float:
            return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]

        return (at(0.50), at(0.95), at(0.99))

    def table(self) -> str:
        lines = [f"{'request':<22}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  statuses"]
        for kind in sorted(self.latencies):
            p50, p95, p99 = self.percentiles(self.latencies[kind])
            statuses = ", ".join(
                f"{status or 'error'}x{count}"
                for (name, status), count in sorted(self.statuses.items())
                if name == kind
            )
            lines.append(
                f"{kind:<22}{len(self.latencies[kind]):>7}{p50 * 1000:>9.0f}{p95 * 1000:>9.0f}"
                f"{p99 * 1000:>9.0f}  {statuses}"
            )
        p50, p95, p99 = self.percentiles(self.ping_to_watcher)
        lines.append(
            f"{'ping -> watcher':<22}{len(self.ping_to_watcher):>7}{p50 * 1000:>9.0f}"
            f"{p95 * 1000:>9.0f}{p99 * 1000:>9.0f}  (location frames on /ws/delivery/)"
        )
        lines.append(
            f"requests {self.requests}, 5xx {self.server_errors}, error rate "
            f"{self.error_rate:.4%}, orders booked {len(self.orders_booked)}, delivered in "
            f"the run {len(self.orders_delivered)}, watchers at peak {self.watchers_peak}, "
            f"frames {dict(self.frames)}, sockets dropped by the server and reconnected "
            f"{dict(self.reconnects)} {dict(self.drop_reasons)}, requests retried once on a "
            f"fresh connection {dict(self.retried)}"
        )
        return "\n".join(lines)


@dataclass
class Rider:
    token: str
    position: tuple[float, float]
    over_http: bool
    job: dict | None = None  # {"order_id", "pickup", "drop", "stage"}
    ws_sent: float = 0.0  # when the last location frame went out, for its ack's latency


@dataclass
class Run:
    base_url: str
    ws_base: str
    origin: str
    riders: list[Rider]
    seeded_watch: list[tuple[str, str]]  # (customer token, order id)
    read_code: Callable[[str], str | None]  # phone -> newest OTP in the outbox, or None
    codes: dict[str, str]  # order id -> delivery code, as the customer would read it out
    seconds: float = 120.0
    bookings_per_second: float = 0.5
    seed: int = 7
    report: Report = field(default_factory=Report)

    async def go(self) -> Report:
        self.rng = random.Random(self.seed)
        self.deadline = time.monotonic() + self.seconds
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30, limits=limits) as http:
            self.http = http
            tasks = [asyncio.create_task(self._rider(rider)) for rider in self.riders]
            tasks += [
                asyncio.create_task(self._watch(token, order_id))
                for token, order_id in self.seeded_watch
            ]
            tasks.append(asyncio.create_task(self._bookings()))
            await asyncio.gather(*tasks)
        return self.report

    def _running(self) -> bool:
        return time.monotonic() < self.deadline

    async def _call(self, kind: str, method: str, path: str, token: str | None = None, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        started = time.monotonic()
        try:
            response = await self.http.request(method, path, headers=headers, **kw)
        except httpx.TransportError as error:
            # A kept-alive connection the server closed as the request went out (a worker
            # recycled after GUNICORN_MAX_REQUESTS): mobile HTTP stacks such as OkHttp try once
            # more on a fresh connection, and so does this -- really fresh, not another kept
            # -alive one from the pool, which may belong to the same leaving worker. Every
            # request here is safe to repeat (pings by recorded_at, bookings by
            # Idempotency-Key, steps answer 409 once taken).
            self.report.retried[f"{kind}: {type(error).__name__}"] += 1
            try:
                async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as fresh:
                    response = await fresh.request(method, path, headers=headers, **kw)
            except httpx.TransportError as again:
                self.report.record(kind, time.monotonic() - started, 0)
                self.report.failures.append(f"{kind}: {type(again).__name__}: {again}")
                return None
        self.report.record(kind, time.monotonic() - started, response.status_code)
        return response

    def _socket(self, path: str, token: str):
        return websockets.asyncio.client.connect(
            f"{self.ws_base}{path}?token={token}", origin=self.origin, open_timeout=30
        )

    # --- Riders ---------------------------------------------------------------------------

    async def _rider(self, rider: Rider) -> None:
        """The rider app: a socket kept open (reconnecting as apps do), a fix every ping."""
        await asyncio.sleep(self.rng.uniform(0, PING_SECONDS))  # not all in step
        backoff = 0.5
        while self._running():
            try:
                async with self._socket("/ws/rider/", rider.token) as socket:
                    backoff = 0.5
                    listener = asyncio.create_task(self._rider_frames(rider, socket))
                    try:
                        while self._running() and not listener.done():
                            started = time.monotonic()
                            self._move(rider)
                            await self._ping(rider, socket)
                            await self._advance(rider)
                            spent = time.monotonic() - started
                            await asyncio.sleep(max(0.0, PING_SECONDS - spent))
                    finally:
                        listener.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await listener  # re-raises how the socket closed, if it did
            except (OSError, ConnectionClosed, TimeoutError) as error:
                self._dropped("rider", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _dropped(self, who: str, error: Exception) -> None:
        """A socket the server dropped (a worker recycled after GUNICORN_MAX_REQUESTS, say):
        apps reconnect, and so does the load; a drop is counted, not a failure."""
        self.report.reconnects[who] += 1
        self.report.drop_reasons[f"{type(error).__name__}: {error}"] += 1

    def _move(self, rider: Rider) -> None:
        if rider.job is None:
            return
        target = rider.job["pickup"] if rider.job["stage"] == "to_pickup" else rider.job["drop"]
        if rider.job["stage"] in {"to_pickup", "to_drop"}:
            rider.position = step_towards(rider.position, target, RIDER_SPEED_MPS * PING_SECONDS)

    async def _ping(self, rider: Rider, socket) -> None:
        body = {"lat": rider.position[0], "lng": rider.position[1], "recorded_at": now_iso()}
        if rider.over_http:
            await self._call(
                "location (HTTP)", "POST", "/api/v1/riders/me/location/", rider.token, json=body
            )
        else:
            rider.ws_sent = time.monotonic()
            await socket.send(json.dumps({"type": "location", **body}))

    async def _rider_frames(self, rider: Rider, socket) -> None:
        async for raw in socket:
            frame = json.loads(raw)
            kind = frame.get("type")
            self.report.frames[f"rider:{kind}"] += 1
            if kind == "location_ack":
                self.report.record("location (WS)", time.monotonic() - rider.ws_sent, 202)
            elif kind == "error":
                self.report.failures.append(f"rider socket error frame: {frame}")
            elif kind == "offer" and rider.job is None:
                await self._accept(rider, frame)

    async def _accept(self, rider: Rider, offer: dict) -> None:
        response = await self._call(
            "offer accept",
            "POST",
            f"/api/v1/riders/offers/{offer['offer_id']}/accept/",
            rider.token,
        )
        if response is not None and response.status_code == 200:
            rider.job = {
                "order_id": offer["order_id"],
                "pickup": (offer["pickup"]["lat"], offer["pickup"]["lng"]),
                "drop": (offer["drop"]["lat"], offer["drop"]["lng"]),
                "stage": "to_pickup",
            }

    async def _step(self, rider: Rider, action: str, **body) -> bool:
        """One delivery step over HTTP; True when it was taken."""
        path = f"/api/v1/delivery/{rider.job['order_id']}/{action}/"
        response = await self._call(f"step {action}", "POST", path, rider.token, json=body or None)
        return response is not None and response.status_code == 200

    async def _advance(self, rider: Rider) -> None:
        """The next delivery step, once the rider is where it is taken."""
        job = rider.job
        if job is None:
            return
        if job["stage"] in {"to_pickup", "to_drop"}:
            target = job["pickup"] if job["stage"] == "to_pickup" else job["drop"]
            if metres_between(rider.position, target) >= ARRIVAL_METRES:
                return
        steps = {
            "to_pickup": ("arrived-pickup", {}, "at_pickup"),
            "at_pickup": ("picked-up", {}, "to_drop"),
            "to_drop": ("arrived-drop", {}, "at_drop"),
            "at_drop": ("deliver", {"delivery_code": self.codes[job["order_id"]]}, "done"),
        }
        action, body, after = steps[job["stage"]]
        if await self._step(rider, action, **body):
            job["stage"] = after
            if after == "done":
                self.report.orders_delivered.add(job["order_id"])
                rider.job = None
            elif after == "to_drop":
                await self._advance(rider)  # picked up at once: nothing to wait for

    # --- Customers --------------------------------------------------------------------------

    async def _bookings(self) -> None:
        booking_tasks = []
        while self._running():
            booking_tasks.append(asyncio.create_task(self._book()))
            await asyncio.sleep(self.rng.expovariate(self.bookings_per_second))
        await asyncio.gather(*booking_tasks)

    async def _sign_in(self) -> str | None:
        phone = f"+9198{self.rng.randrange(10**8):08d}"
        response = await self._call(
            "otp request", "POST", "/api/v1/auth/otp/request/", json={"phone": phone}
        )
        if response is None or response.status_code != 202:
            return None
        code = None
        for _ in range(100):  # the SMS goes out from a Celery task
            code = await asyncio.to_thread(self.read_code, phone)
            if code:
                break
            await asyncio.sleep(0.1)
        if code is None:
            self.report.failures.append(f"no OTP in the outbox for {phone}")
            return None
        response = await self._call(
            "otp verify",
            "POST",
            "/api/v1/auth/otp/verify/",
            json={"phone": phone, "otp": code, "role": "customer"},
        )
        return (
            response.json()["access"]
            if response is not None and response.status_code == 200
            else None
        )

    async def _book(self) -> None:
        token = await self._sign_in()
        if token is None:
            return
        pickup = point_near(CENTRE, 1500, self.rng)
        drop = point_near(pickup, 900, self.rng)
        quote = await self._call(
            "quote",
            "POST",
            "/api/v1/orders/quote/",
            token,
            json={
                "pickup": {"lat": pickup[0], "lng": pickup[1], "address": "Pickup"},
                "drop": {"lat": drop[0], "lng": drop[1], "address": "Drop"},
                "package": {"description": "Parcel", "weight_grams": 800},
            },
        )
        if quote is None or quote.status_code != 201:
            return
        order = await self._call(
            "order create",
            "POST",
            "/api/v1/orders/",
            token,
            json={"quote_id": quote.json()["id"], "payment_method": "cod"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        if order is None or order.status_code != 201:
            return
        booked = order.json()
        self.codes[booked["id"]] = booked["delivery_code"]
        self.report.orders_booked.append(booked["id"])
        await self._watch(token, booked["id"])

    async def _watch(self, token: str, order_id: str) -> None:
        """The customer's tracking screen: until the order ends (close 1000) or the run does."""
        backoff = 0.5
        while self._running():
            try:
                async with self._socket(f"/ws/delivery/{order_id}/", token) as socket:
                    backoff = 0.5
                    await self._read_watch(socket)
                    return  # the run is over
            except ConnectionClosed as closed:
                if closed.rcvd is not None and closed.rcvd.code == 1000:
                    return  # the order ended
                if closed.rcvd is not None and closed.rcvd.code in {4401, 4403}:
                    self.report.failures.append(f"watch socket refused: {closed}")
                    return
                self._dropped("watcher", closed)
            except (OSError, TimeoutError) as error:
                self._dropped("watcher", error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _read_watch(self, socket) -> None:
        self.report._watching += 1
        self.report.watchers_peak = max(self.report.watchers_peak, self.report._watching)
        try:
            while self._running():
                try:
                    raw = await asyncio.wait_for(socket.recv(), timeout=1.0)
                except TimeoutError:
                    continue
                frame = json.loads(raw)
                self.report.frames[f"watch:{frame['type']}"] += 1
                if frame["type"] == "location":
                    sent = datetime.fromisoformat(frame["at"])
                    self.report.ping_to_watcher.append((datetime.now(UTC) - sent).total_seconds())
        finally:
            self.report._watching -= 1
