"""A simulated customer app: signs in, books cash-on-delivery trips inside the zone (quote,
then the order with an Idempotency-Key), learns the 4-digit delivery code from the order it
gets back (the order detail shows it to its customer while the order is live) and watches the
order on /ws/delivery/<id>/ until it ends, re-reading the tracking snapshot when a `seq` is
skipped (within a socket or across a reconnect: each screen keeps the highest seq it showed)
and timing how long each of the rider's fixes took to arrive. Some customers follow
their orders on a second phone too (Config.second_phones)."""

import asyncio
import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed

from simulator.riders import SOCKET_ERRORS, SOCKETS_DROPPED

if TYPE_CHECKING:
    from simulator.run import Simulation

CUSTOMER_PHONE_PREFIX = "+91900006"  # + 4 digits: +919000060000..+919000069999
PACKAGES = [
    ("Documents", 300),
    ("Keys", 100),
    ("Lunch box", 900),
    ("Medicines", 250),
    ("Groceries", 4500),
    ("Laptop", 2500),
    ("Flowers", 700),
    ("Spare parts", 6000),
]
CLOSE_NORMAL, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN = 1000, 4401, 4403
TERMINAL = frozenset({"delivered", "cancelled", "failed"})
CARRIED = frozenset({"picked_up", "at_dropoff"})  # too late for the customer to cancel
CHANGE_OF_MIND_SECONDS = (5.0, 60.0)
CHANGED_MIND = "changed my mind"
FIX_TO_TRACKING = "fix -> tracking socket"  # Stats.delays: recorded_at to the location frame


def customer_phone(index: int) -> str:
    return f"{CUSTOMER_PHONE_PREFIX}{index:04d}"


@dataclass
class TrackingScreen:
    """One phone's tracking screen of an order: what it has shown, across its reconnects."""

    order_id: str
    seq: int | None = None  # the highest seq shown, by a frame or a snapshot
    status: str | None = None
    sockets: int = 0  # opened: one, plus one per reconnect
    gaps: int = 0  # seqs it saw skipped, each followed by a snapshot re-read


class SimCustomer:
    def __init__(self, sim: "Simulation", index: int) -> None:
        self.sim = sim
        self.index = index
        self.phone = customer_phone(index)
        self.rng = random.Random(f"{sim.seed}-customer-{index}")  # noqa: S311 - a simulation
        self.phones = 2 if index < sim.config.second_phones else 1  # each watches every order
        self.session = None
        self.signing_in = True  # until the sign-in succeeded or gave up
        self.screens: list[TrackingScreen] = []
        self.booking = 0  # bookings on the wire (quote asked, order not yet answered)

    async def sign_in(self, *, new: bool = False) -> None:
        """Signs in; a returning customer's app then lists their orders (a new one has none)."""
        try:
            self.session = await self.sim.signin.session(self.phone, "customer")
        finally:
            self.signing_in = False
        if self.session is not None and self.sim.running() and not new:
            await self._adopt_live_orders()

    async def sign_in_and_book(self) -> None:
        """A new customer: signs in by OTP (the app's first start), then books at once."""
        await self.sign_in(new=True)
        if self.session is not None and self.sim.running():
            await self.book()

    def _follow(self, order_id: str) -> None:
        for _ in range(self.phones):
            screen = TrackingScreen(order_id)
            self.screens.append(screen)
            self.sim.watch(self.watch(screen))

    async def _adopt_live_orders(self) -> None:
        """Orders an earlier run left live (it was killed): the app lists them, shows their
        codes, and the customer watches them again (and cancels them at the end)."""
        listed = await self.sim.api.call(
            "order list", "GET", "/api/v1/orders/", session=self.session
        )
        if not listed.ok or not isinstance(listed.body, dict):
            return
        for order in listed.body.get("results", []):
            if order.get("status") in TERMINAL:
                continue
            self.sim.orders.adopt(order["id"], self, order.get("delivery_code"), order["status"])
            self.sim.stats.count("live orders of earlier runs found")
            self._follow(order["id"])

    async def book(self) -> None:
        """Quote, book (cash), hand the code to the book of orders, then watch the order."""
        self.booking += 1
        try:
            await self._book()
        finally:
            self.booking -= 1

    async def _book(self) -> None:
        sim = self.sim
        pickup, drop = sim.zone.random_trip(
            self.rng, sim.config.trip_km[0] * 1000, sim.config.trip_km[1] * 1000
        )
        description, grams = self.rng.choice(PACKAGES)
        number = self.rng.randrange(1, 400)
        quote = await sim.api.call(
            "quote",
            "POST",
            "/api/v1/orders/quote/",
            session=self.session,
            json_body={
                "pickup": {"lat": pickup[0], "lng": pickup[1], "address": f"{number} Pickup Rd"},
                "drop": {"lat": drop[0], "lng": drop[1], "address": f"{number} Drop St"},
                "package": {"description": description, "weight_grams": grams},
            },
        )
        if not quote.ok or not sim.running():
            return
        booked = await sim.api.call(
            "order create",
            "POST",
            "/api/v1/orders/",
            session=self.session,
            json_body={"quote_id": quote.body["id"], "payment_method": "cod", "notes": "simulated"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        if booked.status not in {200, 201}:
            return
        order = booked.body
        sim.orders.booked(order["id"], self, order.get("delivery_code"), order["status"])
        self._follow(order["id"])
        if self.rng.random() < sim.config.cancel_share:
            sim.watch(self._change_mind(order["id"]))

    async def _change_mind(self, order_id: str) -> None:
        """A customer who cancels a little after booking, unless the rider has the parcel."""
        await self.sim.api.sleep(self.rng.uniform(*CHANGE_OF_MIND_SECONDS))
        info = self.sim.orders.get(order_id)
        if not self.sim.running() or info is None or info.status in TERMINAL | CARRIED:
            return
        if await self.cancel(order_id, CHANGED_MIND):
            self.sim.orders.ended(order_id, "cancelled")
            self.sim.stats.count("orders cancelled by their customer")

    async def watch(self, screen: TrackingScreen) -> None:
        """The tracking screen: reconnects when dropped, until it has shown the order's end
        (the server then closes with 1000) or the run is over (the task is cancelled). The end
        seen elsewhere (the rider's app) is no reason to stop: a screen dropped just before the
        last frame reconnects to read it, as the app would."""
        sim = self.sim
        order_id = screen.order_id
        backoff = 1.0
        while screen.status not in TERMINAL:
            opened = False
            try:
                token = await self.session.token()
                async with await sim.api.open_socket(
                    "tracking socket open", f"/ws/delivery/{order_id}/", token
                ) as socket:
                    opened = True
                    screen.sockets += 1
                    sim.stats.count("tracking sockets opened")
                    backoff = 1.0
                    with sim.stats.socket_held("tracking", socket):
                        await self._read(screen, socket)
                if socket.close_code == CLOSE_NORMAL:
                    return  # the order has ended
                sim.stats.count(SOCKETS_DROPPED)  # 1001/1012: the server went away; reconnect
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
                if code == CLOSE_NORMAL:
                    return
                if code in {CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN}:
                    sim.stats.error(f"tracking socket: closed with {code}")
                    if code == CLOSE_FORBIDDEN:
                        return
                else:
                    sim.stats.count(SOCKETS_DROPPED)
            except SOCKET_ERRORS as error:
                if opened:
                    sim.stats.count(SOCKETS_DROPPED)
                else:
                    sim.stats.socket_refused("tracking socket open", error)
            await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))  # see SimRider._ride
            backoff = min(backoff * 2, 30.0)

    async def _read(self, screen: TrackingScreen, socket) -> None:
        sim = self.sim
        order_id = screen.order_id
        async for raw in socket:
            try:
                frame = json.loads(raw)
                kind = frame["type"]
            except (ValueError, TypeError, KeyError):
                sim.stats.error("tracking socket: a frame not as expected", str(raw)[:100])
                continue
            sim.stats.count(f"tracking socket frames: {kind}")
            seq = frame.get("seq")
            if isinstance(seq, int):
                # (the first frame after a reconnect may repeat a seq already shown: no gap)
                if screen.seq is not None and seq > screen.seq + 1:
                    screen.gaps += 1
                    sim.stats.count("tracking seq gaps (snapshot re-read)")
                    snapshot = await sim.api.call(
                        "tracking snapshot",
                        "GET",
                        f"/api/v1/delivery/{order_id}/",
                        session=self.session,
                    )
                    if snapshot.ok:
                        screen.status = snapshot.body.get("status") or screen.status
                        sim.orders.status(order_id, snapshot.body.get("status"))
                screen.seq = max(seq, screen.seq or 0)
            if kind == "status":
                screen.status = frame.get("status") or screen.status
                sim.orders.status(order_id, frame.get("status"))
            elif kind == "location":
                try:
                    fixed_at = datetime.fromisoformat(frame["at"])
                except (KeyError, TypeError, ValueError):
                    sim.stats.error("tracking socket: a location frame without its time")
                    continue
                sim.stats.delay(FIX_TO_TRACKING, (datetime.now(UTC) - fixed_at).total_seconds())

    async def order_code(self, order_id: str) -> str | None:
        """The delivery code as this customer's app shows it (the order detail)."""
        detail = await self.sim.api.call(
            "order detail", "GET", f"/api/v1/orders/{order_id}/", session=self.session
        )
        if not detail.ok:
            return None
        body = detail.body
        self.sim.orders.adopt(order_id, self, body.get("delivery_code"), body.get("status"))
        return body.get("delivery_code")

    async def cancel(self, order_id: str, reason: str) -> bool:
        answer = await self.sim.api.call(
            "order cancel",
            "POST",
            f"/api/v1/orders/{order_id}/cancel/",
            session=self.session,
            json_body={"reason": reason},
            expected=frozenset({409}),
        )
        return answer.ok
