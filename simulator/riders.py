"""A simulated rider app: signs in, gets approved, goes online, keeps /ws/rider/ open, sends a
fix every few seconds while riding street-like routes, answers offers like a person (a short
pause, sometimes a no), and takes every delivery step where it belongs, delivering with the
code the customer passes on.

Position rules it keeps (riders.services.rider_location_record): fixes are stamped now (never
stale or from the future), and consecutive fixes are at most the rider's top speed (30 km/h by
default, under RIDER_MAX_SPEED_KMH) times the time between them apart, plus a few metres of
GPS noise (the server allows 50). There is no minimum interval between fixes. "Arrived" is
only claimed once a fix at the place has been stored, so it is inside DELIVERY_GEOFENCE_M.
"""

import asyncio
import contextlib
import json
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.conf import settings
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from simulator import database
from simulator.api import Answer
from simulator.geo import (
    Point,
    Riding,
    Route,
    bearing,
    fix_is_plausible,
    gps_noise,
    metres_between,
    street_route,
)

if TYPE_CHECKING:
    from simulator.run import Simulation

RIDER_PHONE_PREFIX = "+91900005"  # + 4 digits: +919000050000..+919000059999
ME_PATH = "/api/v1/riders/me/"
LOCATION_PATH = "/api/v1/riders/me/location/"
ACK_TIMEOUT_SECONDS = 10.0
GPS_NOISE_M = 4.0
GPS_FIX_SECONDS = 1.0  # a new fix at most this often; the server refuses fixes under a second apart
SOCKET_ERRORS = (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError)
# Order status -> where the rider is in the job.
STAGE_FOR_STATUS = {
    "rider_assigned": "to_pickup",
    "at_pickup": "at_pickup",
    "picked_up": "to_drop",
    "at_dropoff": "at_drop",
}
CARRYING = frozenset(STAGE_FOR_STATUS)
SOCKETS_DROPPED = "sockets dropped by the server and reopened"
NO_ACK_IN_TIME = "location (WS): no ack in time"  # an error; the ack's latency counts if it comes


def rider_phone(index: int) -> str:
    return f"{RIDER_PHONE_PREFIX}{index:04d}"


def _place(raw: dict) -> Point:
    return (float(raw["lat"]), float(raw["lng"]))


@dataclass
class Job:
    order_id: str
    pickup: Point
    drop: Point
    stage: str  # to_pickup, at_pickup, to_drop, at_drop
    dwell_until: float = 0.0


class SimRider:
    def __init__(self, sim: "Simulation", index: int) -> None:
        self.sim = sim
        self.index = index
        self.phone = rider_phone(index)
        self.vehicle_number = f"KA99SM{index:04d}"
        self.rng = random.Random(f"{sim.seed}-rider-{index}")  # noqa: S311 - a simulation
        config = sim.config
        self.riding = Riding.pick(self.rng, *config.speed_kmh)
        # Exactly --http-share of the riders, spread evenly (0.5: every other one).
        share = config.http_share
        self.over_http = math.floor((index + 1) * share) > math.floor(index * share)
        self.session = None
        self.position: Point | None = None
        self.route: Route | None = None
        self.parked_until = 0.0
        self.job: Job | None = None
        self.online = False
        self.socket = None
        self._acks: deque[tuple[asyncio.Future, float]] = deque()
        self._offer_task: asyncio.Task | None = None
        self._withdrawn: set[str] = set()
        self._moved_at = time.monotonic()
        self._speed_mps = 0.0
        self._last_fix: Point | None = None
        self._last_body: dict | None = None  # the last fix sent, and when it was taken
        self._last_body_at = 0.0

    # --- Life cycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        if not await self._start():
            return
        await self._ride()

    async def _start(self) -> bool:
        sim = self.sim
        self.session = await sim.signin.session(self.phone, "rider")
        if self.session is None or not sim.running():
            return False
        profile = await self._call("rider profile", "GET", ME_PATH)
        if not profile.ok:
            return False
        if not profile.body.get("approved"):
            if profile.body.get("vehicle_number") != self.vehicle_number:
                await self._call(
                    "rider profile update",
                    "PUT",
                    ME_PATH,
                    json_body={
                        "name": f"Sim rider {self.index + 1}",
                        "vehicle_type": self.rng.choice(["scooter", "motorcycle", "ev_scooter"]),
                        "vehicle_number": self.vehicle_number,
                    },
                )
            # What ops do with `manage.py rider_approve`; the simulator's own riders only.
            if await sim.db.run(database.approve_rider, self.phone):
                sim.stats.count("riders approved by the simulator")
        await self._place_at_start()
        status = profile.body.get("status")
        if status == "on_delivery":
            order_id = await sim.db.run(database.rider_current_order, self.phone)
            if order_id:
                await self._resume(order_id)
        if status in {"online", "on_delivery"}:  # an earlier run's: the app carries on
            self.online = True
            sim.stats.count("riders online already")
            return True
        # A first fix before going online, so dispatch knows where the rider is at once.
        await self._send_fix_http()
        online = await self._call("rider online", "POST", ME_PATH + "online/")
        if not online.ok:
            return False
        self.online = True
        sim.stats.count("riders went online")
        return True

    async def _place_at_start(self) -> None:
        """Where the rider starts: a random spot in the zone, or where an earlier run left it
        when the jump from there would break the server's speed rule."""
        spawn = self.sim.zone.random_point(self.rng)
        last = await self.sim.db.run(database.rider_last_fix, self.phone)
        self.position = spawn
        if last is not None:
            lat, lng, at = last
            seconds = (datetime.now(UTC) - at).total_seconds()
            jump_ok = fix_is_plausible(
                (lat, lng), spawn, seconds, max_speed_kmh=self.riding.max_kmh, jitter_m=0
            )
            if not jump_ok:
                self.position = (lat, lng)
        self._moved_at = time.monotonic()

    async def _ride(self) -> None:
        """The socket, kept open (reconnecting with backoff) and a fix every tick, until the run
        stops."""
        backoff = 1.0
        while self.sim.running():
            opened = False
            try:
                token = await self.session.token()
                async with await self.sim.api.open_socket(
                    "rider socket open", "/ws/rider/", token
                ) as socket:
                    opened = True
                    self.socket = socket
                    self.sim.stats.count("rider sockets opened")
                    backoff = 1.0
                    reader = asyncio.create_task(self._read(socket))
                    try:
                        with self.sim.stats.socket_held("rider", socket):
                            await self._tick_until_stopped(reader)
                    finally:
                        self.socket = None
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError, *SOCKET_ERRORS):
                            await reader
                        self._fail_waiting_acks()
                if self.sim.running():
                    raise ConnectionClosed(None, None)
            except SOCKET_ERRORS as error:
                if not self.sim.running():
                    break
                if opened:  # e.g. a web worker recycled (GUNICORN_MAX_REQUESTS): apps reconnect
                    self.sim.stats.count(SOCKETS_DROPPED)
                else:
                    self.sim.stats.socket_refused("rider socket open", error)
                # Jittered, as apps do: a web worker recycling drops all its sockets at once,
                # and their reconnects should not land on the next worker in one burst.
                await self.sim.api.sleep(backoff * self.rng.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 30.0)

    async def _tick_until_stopped(self, reader: asyncio.Task) -> None:
        next_tick = time.monotonic()
        while self.sim.running() and not reader.done():
            await self._tick()
            # The phone's location timer keeps its pace whatever the server does: a tick that
            # ran late (a slow answer) is followed by the next one at once, but never by a
            # burst of the ones missed.
            next_tick += self.sim.config.ping_seconds * self.rng.uniform(0.9, 1.1)
            next_tick = max(next_tick, time.monotonic())
            await self.sim.api.sleep(next_tick - time.monotonic())

    async def _tick(self) -> None:
        now = time.monotonic()
        self._move(now - self._moved_at)
        self._moved_at = now
        stored = await self._send_fix()
        if self.job is not None:
            await self._job_step(stored)

    async def wind_down(self) -> None:
        """At the end of the run, after the customers cancelled what they could: a delivery
        still in hand fails ("simulator stopped"), then the rider goes offline."""
        if self.session is None:
            return
        if self.job is not None:
            snapshot = await self._call("tracking snapshot", "GET", self._order_path(""))
            if snapshot.ok and snapshot.body.get("status") in CARRYING:
                info = self.sim.orders.get(self.job.order_id)
                if info is not None:
                    info.closing = True
                failed = await self._call(
                    "step fail",
                    "POST",
                    self._order_path("fail/"),
                    json_body={"reason": "simulator stopped"},
                    expected=frozenset({409}),
                )
                if failed.ok:
                    self.sim.orders.ended(self.job.order_id, "failed", at_shutdown=True)
            self.job = None
        if self.online:
            offline = await self._call("rider offline", "POST", ME_PATH + "offline/")
            if offline.ok:
                self.online = False
                self.sim.stats.count("riders went offline at the end")

    # --- Moving and reporting -----------------------------------------------------------------

    def _move(self, seconds: float) -> None:
        """Rides on for `seconds`: towards the job's place, or, idle, around the zone with
        stops in between (parked for a minute or so, as riders wait for work)."""
        self._speed_mps = 0.0
        if self.job is not None:
            moving = self.job.stage in {"to_pickup", "to_drop"}
            if not moving or self.route is None or self.route.done:
                return  # at the door, or arrived and the step follows
        elif self.route is None or self.route.done:
            self.route = None
            if time.monotonic() < self.parked_until:
                return
            if self.rng.random() < 0.5 and self.sim.zone.contains(self.position):
                self.parked_until = time.monotonic() + self.rng.uniform(20, 90)
                return
            self._route_to(self.sim.zone.random_point_near(self.rng, self.position, 300, 1500))
        before = self.position
        self.position = self.route.advance(self.riding.tick_speed_mps(self.rng) * seconds)
        if seconds > 0:
            self._speed_mps = metres_between(before, self.position) / seconds

    def _route_to(self, target: Point) -> None:
        self.route = Route(
            street_route(self.position, target, self.rng, grid_angle_deg=self.sim.grid_angle)
        )

    def _fix(self) -> dict:
        """The phone's newest GPS fix. A receiver gives one a second at most: asked again
        sooner (going online, a socket just reopened), the app sends the same fix again."""
        now = time.monotonic()
        if self._last_body is not None and now - self._last_body_at < GPS_FIX_SECONDS:
            return self._last_body
        point = gps_noise(self.position, self.rng, GPS_NOISE_M)
        body = {
            "lat": round(point[0], 7),
            "lng": round(point[1], 7),
            "accuracy_m": round(self.rng.uniform(4.0, 12.0), 1),
            "speed_mps": round(self._speed_mps, 2),
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        if self._speed_mps > 0 and self._last_fix is not None:
            body["heading"] = round(bearing(self._last_fix, point), 1)
        self._last_fix = point
        self._last_body, self._last_body_at = body, now
        return body

    async def _send_fix(self) -> bool:
        """One fix, over the socket (waiting for its ack) or over HTTP; True when stored."""
        if self.over_http or self.socket is None:
            return await self._send_fix_http()
        future = asyncio.get_running_loop().create_future()
        self._acks.append((future, time.monotonic()))
        self.sim.stats.count("fixes sent over the socket")
        try:
            await self.socket.send(json.dumps({"type": "location", **self._fix()}))
            return await asyncio.wait_for(asyncio.shield(future), ACK_TIMEOUT_SECONDS)
        except TimeoutError:
            self.sim.stats.error(NO_ACK_IN_TIME)
            return False
        except ConnectionClosed:
            return False

    async def _send_fix_http(self) -> bool:
        self.sim.stats.count("fixes sent over HTTP")
        answer = await self._call("location (HTTP)", "POST", LOCATION_PATH, json_body=self._fix())
        return answer.status == 202

    def _fail_waiting_acks(self) -> None:
        while self._acks:
            future, _ = self._acks.popleft()
            if not future.done():
                future.set_result(False)

    # --- The socket's frames ------------------------------------------------------------------

    async def _read(self, socket) -> None:
        stats = self.sim.stats
        async for raw in socket:
            try:
                frame = json.loads(raw)
            except ValueError:
                stats.error("rider socket: a frame that is not JSON")
                continue
            kind = frame.get("type") if isinstance(frame, dict) else None
            stats.count(f"rider socket frames: {kind}")
            try:
                self._handle(frame, kind)
            except (KeyError, TypeError, ValueError) as error:
                stats.error(f"rider socket: a {kind} frame not as expected", repr(error))

    def _handle(self, frame: dict, kind: str | None) -> None:
        if kind in {"location_ack", "error"}:
            self._acknowledged(frame)
        elif kind == "offer":
            self._offered(frame)
        elif kind == "offer_withdrawn":
            self._withdrawn.add(str(frame.get("offer_id")))
        elif kind == "assigned" and self.job is None:
            self.sim.stats.count("orders assigned by ops")
            self._take(frame)
        elif kind == "unassigned" and self.job and self.job.order_id == frame.get("order_id"):
            self.sim.stats.count("deliveries taken from the rider (cancelled or unassigned)")
            self.job = None
            self.route = None

    def _acknowledged(self, frame: dict) -> None:
        if not self._acks:
            self.sim.stats.error(f"rider socket: unexpected {frame.get('type')} frame")
            return
        future, sent = self._acks.popleft()
        stored = frame["type"] == "location_ack"
        latencies = self.sim.stats.latencies["location (WS)"]
        latencies.append(time.monotonic() - sent)
        self.sim.stats.statuses[("location (WS)", 202 if stored else 400)] += 1
        if not stored:
            self.sim.stats.error(f"location (WS): error frame {frame.get('code')}")
        if not future.done():
            future.set_result(stored)

    def _offered(self, offer: dict) -> None:
        self.sim.stats.count("offers received")
        busy = self._offer_task is not None and not self._offer_task.done()
        if self.job is not None or busy or not self.sim.running():
            self.sim.stats.count("offers ignored (rider busy)")
            return
        self._offer_task = asyncio.create_task(self.sim.guarded(self._consider(offer)))

    async def _consider(self, offer: dict) -> None:
        """A person reads the offer, thinks a moment, and mostly takes it."""
        sim, config = self.sim, self.sim.config
        offer_id, order_id = str(offer["offer_id"]), str(offer["order_id"])
        # Only orders whose customer can tell the code: the simulator's own customers'.
        deliverable = await sim.delivery_code(order_id) is not None
        take = deliverable and self.rng.random() >= config.decline_rate
        delay = self.rng.uniform(*config.accept_delay_seconds)
        try:
            expires = datetime.fromisoformat(offer["expires_at"])
            delay = min(delay, max(0.0, (expires - datetime.now(UTC)).total_seconds() - 2.0))
        except (KeyError, TypeError, ValueError):
            pass
        await sim.api.sleep(delay)
        if offer_id in self._withdrawn or not sim.running() or self.job is not None:
            sim.stats.count("offers withdrawn before the rider answered")
            return
        action = "accept" if take else "decline"
        answer = await self._call(
            f"offer {action}",
            "POST",
            f"/api/v1/riders/offers/{offer_id}/{action}/",
            expected=frozenset({409}),
        )
        if answer.status == 409:
            sim.stats.count("offers gone when answered (taken, expired or withdrawn)")
        elif answer.ok and take:
            sim.stats.count("offers accepted")
            self._take(offer)
        elif answer.ok:
            why = "by choice" if deliverable else "not a simulated customer's order"
            sim.stats.count(f"offers declined ({why})")

    # --- Deliveries ---------------------------------------------------------------------------

    def _take(self, frame: dict) -> None:
        self.job = Job(
            order_id=str(frame["order_id"]),
            pickup=_place(frame["pickup"]),
            drop=_place(frame["drop"]),
            stage="to_pickup",
        )
        self.sim.orders.assigned(self.job.order_id)
        self._route_to(self.job.pickup)

    async def _resume(self, order_id: str) -> None:
        """Picks up a delivery an earlier run left in this rider's hands."""
        self.job = Job(order_id=order_id, pickup=self.position, drop=self.position, stage="?")
        if await self._sync_job():
            self.sim.stats.count("deliveries resumed from an earlier run")

    async def _sync_job(self) -> bool:
        """Re-reads the order (tracking snapshot): the job follows its status, or ends when the
        order is no longer this rider's. True while the job goes on."""
        job = self.job
        snapshot = await self._call(
            "tracking snapshot", "GET", self._order_path(""), expected=frozenset({404})
        )
        status = snapshot.body.get("status") if snapshot.ok else None
        if snapshot.status == 0 or (snapshot.status >= 500):
            return True  # try again on a later tick
        if status not in CARRYING:
            self.sim.stats.count("deliveries that ended under the rider")
            if status:
                self.sim.orders.ended(job.order_id, status)
            self.job = None
            self.route = None
            return False
        job.pickup, job.drop = _place(snapshot.body["pickup"]), _place(snapshot.body["drop"])
        stage = STAGE_FOR_STATUS[status]
        if stage != job.stage:
            job.stage = stage
            if stage in {"to_pickup", "to_drop"}:
                self._route_to(job.pickup if stage == "to_pickup" else job.drop)
        return True

    def _order_path(self, action: str) -> str:
        return f"/api/v1/delivery/{self.job.order_id}/{action}"

    async def _step(self, action: str, body: dict | None = None) -> Answer:
        answer = await self._call(
            f"step {action}", "POST", self._order_path(f"{action}/"), json_body=body
        )
        if answer.status in {404, 409} and answer.code not in {
            "outside_geofence",
            "location_required",
            "delivery_code_invalid",
        }:
            await self._sync_job()  # cancelled by the customer, taken back by ops...
        return answer

    async def _job_step(self, stored: bool) -> None:
        job = self.job
        sim = self.sim
        if job.stage in {"to_pickup", "to_drop"}:
            if not (stored and self.route is not None and self.route.done):
                return
            if job.stage == "to_pickup":
                answer = await self._step("arrived-pickup")
                next_stage = "at_pickup"
            else:
                answer = await self._step("arrived-drop")
                next_stage = "at_drop"
            if answer.ok and self.job is job:
                job.stage = next_stage
                job.dwell_until = time.monotonic() + self.rng.uniform(*sim.config.dwell_seconds)
            return
        if time.monotonic() < job.dwell_until:
            return
        if job.stage == "at_pickup":
            answer = await self._step("picked-up")
            if answer.ok and self.job is job:
                job.stage = "to_drop"
                self._route_to(job.drop)
        elif job.stage == "at_drop":
            code = await sim.delivery_code(job.order_id)
            if code is None and await sim.customer_still_signing_in(job.order_id):
                return  # the customer's app is opening (a run resumed): wait at the door
            if code is None:
                answer = await self._step("fail", {"reason": "no delivery code from the customer"})
                if answer.ok:
                    sim.orders.ended(job.order_id, "failed")
                    self.job = None
                return
            answer = await self._step("deliver", {"delivery_code": code})
            if answer.ok and self.job is job:
                sim.stats.count("deliveries completed")
                sim.orders.ended(job.order_id, "delivered")
                self.job = None
                self.route = None

    async def _call(self, kind: str, method: str, path: str, **kwargs) -> Answer:
        return await self.sim.api.call(kind, method, path, session=self.session, **kwargs)


def rider_settings_check(max_kmh: float) -> str | None:
    """Why riders this fast would break the server's speed rule, or None."""
    if max_kmh >= settings.RIDER_MAX_SPEED_KMH:
        return (
            f"--speed-kmh must stay under the server's RIDER_MAX_SPEED_KMH "
            f"({settings.RIDER_MAX_SPEED_KMH:g}), or fixes are refused"
        )
    return None
