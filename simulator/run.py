"""The whole simulation: options, the book of orders, starting everyone, the booking clock,
progress lines, the shutdown and the summary."""

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

from simulator.api import RETRIED, Api, TokenStore
from simulator.customers import TERMINAL, SimCustomer
from simulator.database import Database
from simulator.geo import Zone
from simulator.riders import SOCKETS_DROPPED, SimRider
from simulator.signin import OTP_CONCURRENCY, SignIn
from simulator.stats import Stats, percentile

logger = logging.getLogger("simulator")

SHUTDOWN_REASON = "simulator stopped"
# Each step of the shutdown waits at most this long before moving on.
WIND_DOWN_STEP_SECONDS = 20.0
MAX_PHONES = 10_000  # each range has four free digits
EARLIER = "earlier runs' orders "
FIRST_CUSTOMERS = 3  # signed in before the riders; the others after them
NOT_OURS = "offers declined (not a simulated customer's order)"
NEW_CUSTOMERS_AT_ONCE = 1000  # new_customer_per_order: OTP sign-ins are not paced


class SimulationError(Exception):
    """The run cannot start (no server, no service area...); the message says why."""


@dataclass(frozen=True)
class Config:
    url: str = "http://127.0.0.1:5000"
    riders: int = 200
    orders_per_minute: float = 30.0
    minutes: float | None = None
    seed: int | None = None
    customers: int = 100  # 3 live orders each (max_live_orders): 300 orders under way at most
    area: str | None = None
    radius_km: float = 5.0
    trip_km: tuple[float, float] = (1.0, 4.0)
    speed_kmh: tuple[float, float] = (15.0, 30.0)
    ping_seconds: float = 4.0
    dwell_seconds: tuple[float, float] = (20.0, 60.0)
    accept_delay_seconds: tuple[float, float] = (1.0, 6.0)
    decline_rate: float = 0.1
    cancel_share: float = 0.0  # bookings their customer cancels a little later, before pickup
    http_share: float = 0.2
    token_file: Path | None = Path(".local/simulator-tokens.json")
    mint_when_throttled: bool = False
    report_seconds: float = 15.0
    ramp_seconds: float = 10.0  # riders start spread over this long
    # Not options of the command; the proof suite's load test (proof/test_load.py) sets them.
    # Every booking by a customer opening the app for the first time: a new phone number signs
    # in by OTP, then books. The per-IP OTP throttle must allow one sign-in per booking: these
    # sign-ins are not paced, each customer signs in on their own phone.
    new_customer_per_order: bool = False
    # The first this many --customers follow each of their orders on a second phone as well.
    second_phones: int = 0
    # False: the run stops as a killed one would once the calls on the wire have finished,
    # leaving orders and riders as they are, for a test to look at (a later run resumes them).
    wind_down: bool = True

    def problems(self) -> list[str]:
        found = []
        if not 0 <= self.riders <= MAX_PHONES or not 0 <= self.customers <= MAX_PHONES:
            found.append(f"--riders and --customers must be between 0 and {MAX_PHONES}")
        if self.orders_per_minute < 0:
            found.append("--orders-per-minute must not be negative")
        if self.orders_per_minute > 0 and self.customers == 0 and not self.new_customer_per_order:
            found.append("booking orders needs at least one --customers")
        if not 0 <= self.second_phones <= self.customers:
            found.append("second_phones must be between 0 and --customers")
        if self.minutes is not None and self.minutes <= 0:
            found.append("--minutes must be positive")
        for name, (low, high) in (
            ("--trip-km", self.trip_km),
            ("--speed-kmh", self.speed_kmh),
            ("--dwell-seconds", self.dwell_seconds),
            ("--accept-delay-seconds", self.accept_delay_seconds),
        ):
            if not 0 <= low <= high:
                found.append(f"{name} must be MIN-MAX with 0 <= MIN <= MAX")
        if self.speed_kmh[0] <= 0:
            found.append("--speed-kmh must be positive")
        if self.ping_seconds < 0.5 or self.radius_km <= 0:
            found.append("--ping-seconds must be at least 0.5 and --radius-km positive")
        if not all(
            0 <= share <= 1 for share in (self.decline_rate, self.http_share, self.cancel_share)
        ):
            found.append(
                "--decline-rate, --cancel-share and --http-share are shares between 0 and 1"
            )
        return found


@dataclass
class OrderInfo:
    order_id: str
    customer: SimCustomer
    code: str | None
    status: str
    this_run: bool
    booked_at: float = field(default_factory=time.monotonic)
    assigned_at: float | None = None
    ended_at: float | None = None
    ended_at_shutdown: bool = False
    closing: bool = False  # the simulator is closing it at shutdown (cancel or fail sent)


class OrderBook:
    """Every order the simulated customers know of, with its code and how it ended. Orders of
    an earlier run join it when a rider meets them (`adopt`) and are counted apart."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._orders: dict[str, OrderInfo] = {}

    def booked(self, order_id: str, customer, code: str | None, status: str) -> None:
        self._orders[order_id] = OrderInfo(order_id, customer, code, status, this_run=True)
        self.stats.count("orders booked")

    def adopt(self, order_id: str, customer, code: str | None, status: str | None) -> None:
        info = self._orders.get(order_id)
        if info is None:
            info = OrderInfo(order_id, customer, code, status or "?", this_run=False)
            self._orders[order_id] = info
        info.code = info.code or code

    def get(self, order_id: str) -> OrderInfo | None:
        return self._orders.get(order_id)

    def assigned(self, order_id: str) -> None:
        info = self._orders.get(order_id)
        if info is not None and info.assigned_at is None:
            info.assigned_at = time.monotonic()

    def status(self, order_id: str, status: str | None) -> None:
        info = self._orders.get(order_id)
        if info is None or not status or info.status in TERMINAL:
            return
        if status in TERMINAL:
            self.ended(order_id, status)
        else:
            info.status = status

    def ended(self, order_id: str, status: str, *, at_shutdown: bool = False) -> None:
        info = self._orders.get(order_id)
        if info is None or info.ended_at is not None:
            return
        info.status, info.ended_at = status, time.monotonic()
        # The status frame on the customer's socket may come before the cancel's answer.
        info.ended_at_shutdown = at_shutdown or info.closing

    def open(self) -> list[OrderInfo]:
        return [info for info in self._orders.values() if info.status not in TERMINAL]

    def all(self) -> list[OrderInfo]:
        return list(self._orders.values())

    def outcomes(self) -> Counter:
        counts = Counter()
        for info in self._orders.values():
            if info.this_run:
                shutdown = " at shutdown" if info.ended_at_shutdown else ""
                counts[f"{info.status}{shutdown}" if info.status in TERMINAL else "open"] += 1
            elif info.status in TERMINAL:
                counts[f"{EARLIER}{info.status}"] += 1
        return counts

    def delivery_minutes(self) -> list[float]:
        return [
            (info.ended_at - info.booked_at) / 60
            for info in self._orders.values()
            if info.this_run and info.status == "delivered" and info.ended_at is not None
        ]


class Simulation:
    def __init__(self, config: Config, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.seed = (
            config.seed if config.seed is not None else random.SystemRandom().randrange(10**6)
        )
        self.rng = random.Random(self.seed)  # noqa: S311 - a simulation
        self.grid_angle = self.rng.uniform(-25.0, 25.0)  # the city's street grid
        self.stats = Stats()
        self.orders = OrderBook(self.stats)
        self.riders: list[SimRider] = []
        self.customers: list[SimCustomer] = []
        self.zone: Zone | None = None
        self.area_name = ""
        self.max_live_orders: int | None = None  # per customer, as /api/config/ says
        self.online_at_end = 0
        self.started_at = self.ended_at = None
        self._running = False
        self._stop: asyncio.Event | None = None
        self._bookings: set[asyncio.Task] = set()
        self._watches: set[asyncio.Task] = set()
        self._customers_by_phone: dict[str, SimCustomer] = {}
        self._next_customer = config.customers  # the index of the next new customer

    # --- What riders and customers use ---------------------------------------------------------

    def running(self) -> bool:
        return self._running

    def watch(self, coroutine: Coroutine) -> None:
        task = asyncio.create_task(self.guarded(coroutine))
        self._watches.add(task)
        task.add_done_callback(self._watches.discard)

    async def guarded(self, coroutine: Coroutine):
        """Runs one app's task; a bug in the simulator is counted and logged, and ends that
        task only, never the run."""
        try:
            return await coroutine
        except Exception as error:
            logger.exception("simulator task failed")
            self.stats.error(f"simulator: unexpected {type(error).__name__}", str(error))
            return None

    async def delivery_code(self, order_id: str) -> str | None:
        """The code the order's customer reads out: known from booking, or asked of the
        customer's app (order detail) for an order of an earlier run. None for orders that are
        not a simulated customer's, or whose customer is not signed in."""
        info = self.orders.get(order_id)
        if info is not None and info.code:
            return info.code
        customer = await self._customer_of(order_id)
        if customer is None or customer.session is None:
            return None
        return await customer.order_code(order_id)

    async def customer_still_signing_in(self, order_id: str) -> bool:
        """The order is a simulated customer's whose app has not finished signing in yet."""
        customer = await self._customer_of(order_id)
        return customer is not None and customer.signing_in and self.running()

    async def _customer_of(self, order_id: str) -> SimCustomer | None:
        info = self.orders.get(order_id)
        if info is not None:
            return info.customer
        from simulator import database

        phone = await self.db.run(database.order_customer_phone, order_id)
        return self._customers_by_phone.get(phone)

    # --- The run ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Runs until --minutes have passed, Ctrl-C (or SIGTERM), or a fatal problem; then winds
        down. A second Ctrl-C cancels this task: everything is closed without winding down."""
        for noisy in ("httpx", "httpcore", "websockets"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # A connection per app, as phones have (the fewer, the more calls queue here).
        connections = max(100, self.config.riders + self.config.customers)
        self.api = Api(self.config.url, self.stats, max_connections=connections)
        self.db = Database()
        store = TokenStore(self.config.token_file, self.config.url)
        self.signin = SignIn(
            self.api,
            self.db,
            store,
            self.stats,
            running=self.running,
            say=self.say,
            mint_when_throttled=self.config.mint_when_throttled,
            otp_at_once=(
                NEW_CUSTOMERS_AT_ONCE if self.config.new_customer_per_order else OTP_CONCURRENCY
            ),
        )
        tasks: list[asyncio.Task] = []
        handled = self._handle_signals(loop, asyncio.current_task())
        try:
            await self._find_zone()
            self._running = True
            self.started_at = time.monotonic()
            self._announce()
            self.customers = [SimCustomer(self, i) for i in range(self.config.customers)]
            self._customers_by_phone = {c.phone: c for c in self.customers}
            self.riders = [SimRider(self, i) for i in range(self.config.riders)]
            # Sign-ins queue in this order (a throttled first run serves them so): a few
            # customers, so booking can start, then the riders, then the other customers.
            first = FIRST_CUSTOMERS
            tasks += [
                asyncio.create_task(self.guarded(c.sign_in())) for c in self.customers[:first]
            ]
            step = self.config.ramp_seconds / max(1, len(self.riders))
            rider_tasks = [
                asyncio.create_task(self._later(0.5 + i * step, rider.run))
                for i, rider in enumerate(self.riders)
            ]
            tasks += rider_tasks
            # The other customers open their apps over a ramp as long, after the riders'.
            later = self.config.ramp_seconds + 1.0
            customer_step = self.config.ramp_seconds / max(1, len(self.customers) - first)
            tasks += [
                asyncio.create_task(self._later(later + i * customer_step, c.sign_in))
                for i, c in enumerate(self.customers[first:])
            ]
            tasks.append(asyncio.create_task(self._book_orders()))
            tasks.append(asyncio.create_task(self._report()))
            if self.config.minutes:
                loop.call_later(self.config.minutes * 60, self._stop.set)
            await self._stop.wait()
            await self._wind_down(rider_tasks)
        finally:
            self._running = False
            self.api.hurry.set()
            leftovers = [t for t in [*tasks, *self._bookings, *self._watches] if not t.done()]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            for sig in handled:
                loop.remove_signal_handler(sig)
            await self.db.close()
            await self.api.close()
            self.ended_at = time.monotonic()

    def _handle_signals(self, loop, main: asyncio.Task) -> list[int]:
        def stop() -> None:
            if not self._stop.is_set():
                self.say(
                    "Stopping: cancelling open orders, riders going offline (Ctrl-C again "
                    "to stop at once)..."
                )
                self._stop.set()
            else:
                self.say("Stopping at once.")
                main.cancel()

        handled = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop)
                handled.append(sig)
        return handled

    async def _find_zone(self) -> None:
        answer = await self.api.call("config", "GET", "/api/config/")
        if answer.status == 0:
            raise SimulationError(
                f"No server answers at {self.config.url}; start one first (make run), or pass "
                "--url."
            )
        if not answer.ok or not isinstance(answer.body, dict):
            raise SimulationError(f"GET /api/config/ answered HTTP {answer.status}.")
        areas = answer.body.get("service_areas") or []
        if self.config.area:
            areas = [a for a in areas if a.get("name") == self.config.area]
        if not areas:
            wanted = f" named {self.config.area!r}" if self.config.area else ""
            raise SimulationError(
                f"The server has no active service area{wanted} (/api/config/); load the demo "
                "data (python manage.py seed_demo) or draw one in the admin."
            )
        self.max_live_orders = answer.body.get("max_live_orders")
        # The sockets where the server says they are (a `sockets` role on a host of its own).
        self.api.sockets_url = answer.body.get("websocket_url") or None
        area = areas[0]
        self.area_name = area.get("name", "")
        self.zone = Zone.inside_bbox(area["bbox"], self.config.radius_km * 1000)

    def _announce(self) -> None:
        c, zone = self.config, self.zone
        until = f"for {c.minutes:g} min" if c.minutes else "until Ctrl-C"
        self.say(
            f"Simulating {c.riders} riders and {c.customers} customers booking "
            f"{c.orders_per_minute:g} orders/min against {c.url} {until} (seed {self.seed}).\n"
            f"  Zone: {zone.radius_m / 1000:.1f} km around {zone.centre[0]:.4f},"
            f"{zone.centre[1]:.4f} in service area {self.area_name!r}; riders ride "
            f"{c.speed_kmh[0]:g}-{c.speed_kmh[1]:g} km/h and send a fix every "
            f"{c.ping_seconds:g} s."
        )

    async def _later(self, delay: float, start: Callable[[], Coroutine]) -> None:
        await self.api.sleep(delay)
        if self.running():
            await self.guarded(start())

    async def _book_orders(self) -> None:
        """Poisson arrivals at --orders-per-minute, each from one of the signed-in customers,
        or from a new customer signing in first (new_customer_per_order)."""
        if self.config.orders_per_minute <= 0:
            return
        new_customers = self.config.new_customer_per_order
        while self.running() and not new_customers and not any(c.session for c in self.customers):
            await self.api.sleep(0.5)
        rate = self.config.orders_per_minute / 60.0
        while self.running():
            await self.api.sleep(self.rng.expovariate(rate))
            if not self.running():
                continue
            if new_customers and self._next_customer >= MAX_PHONES:
                self.stats.error("bookings stopped: no phone number left for a new customer")
                return
            if new_customers:
                booking = self._new_customer().sign_in_and_book()
            else:
                ready = self._customers_who_may_book()
                if not ready:
                    continue
                booking = self.rng.choice(ready).book()
            task = asyncio.create_task(self.guarded(booking))
            self._bookings.add(task)
            task.add_done_callback(self._bookings.discard)

    def _customers_who_may_book(self) -> list[SimCustomer]:
        """Signed-in customers below the server's limit of live orders (as a customer's app
        would not offer a fourth booking), counting the bookings still on the wire."""
        live = Counter(info.customer for info in self.orders.open())
        signed_in = [c for c in self.customers if c.session is not None]
        limit = self.max_live_orders
        ready = [c for c in signed_in if limit is None or live[c] + c.booking < limit]
        if signed_in and not ready:
            self.stats.count("bookings skipped: every customer has the most live orders allowed")
        return ready

    def _new_customer(self) -> SimCustomer:
        customer = SimCustomer(self, self._next_customer)
        self._next_customer += 1
        self.customers.append(customer)
        self._customers_by_phone[customer.phone] = customer
        return customer

    async def _report(self) -> None:
        while self.running():
            await self.api.sleep(self.config.report_seconds)
            if self.signin.fatal:
                self._stop.set()
                return
            if self.running():
                self.say(self.progress())

    def progress(self) -> str:
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        signed_in = sum(1 for r in self.riders if r.session is not None)
        online = sum(1 for r in self.riders if r.online)
        busy = sum(1 for r in self.riders if r.job is not None)
        outcomes = self.orders.outcomes()
        return (
            f"[{elapsed:5.0f} s] riders signed in {signed_in}/{len(self.riders)}, online "
            f"{online}, on a delivery {busy}; orders booked {self.stats.events['orders booked']}, "
            f"delivered {outcomes['delivered']}, cancelled {outcomes['cancelled']}, failed "
            f"{outcomes['failed']}, open {outcomes['open']}; calls {self.stats.calls}, errors "
            f"{sum(self.stats.errors.values())}, 5xx {self.stats.server_errors}"
        )

    async def _wind_down(self, rider_tasks: list[asyncio.Task]) -> None:
        """Bookings on the wire finish; riders stop; customers cancel orders not yet picked up;
        riders fail the deliveries still in hand and go offline. Sockets close as they go."""
        self.online_at_end = sum(1 for rider in self.riders if rider.online)
        self._running = False
        self.api.hurry.set()
        for tasks in (set(self._bookings), rider_tasks):
            if tasks:
                await asyncio.wait(tasks, timeout=WIND_DOWN_STEP_SECONDS)
        if not self.config.wind_down:
            return
        slots = asyncio.Semaphore(20)

        async def bounded(coroutine):
            async with slots:
                return await coroutine

        open_orders = [
            info
            for info in self.orders.open()
            if info.customer.session is not None and info.status not in {"picked_up", "at_dropoff"}
        ]
        for info in open_orders:
            info.closing = True
        cancelled = await self._gather(
            self.guarded(bounded(info.customer.cancel(info.order_id, SHUTDOWN_REASON)))
            for info in open_orders
        )
        for info, ok in zip(open_orders, cancelled, strict=True):
            if ok is True:
                self.orders.ended(info.order_id, "cancelled", at_shutdown=True)
        await self._gather(self.guarded(bounded(rider.wind_down())) for rider in self.riders)

    @staticmethod
    async def _gather(coroutines) -> list:
        tasks = [asyncio.create_task(c) for c in coroutines]
        if not tasks:
            return []
        done, pending = await asyncio.wait(tasks, timeout=WIND_DOWN_STEP_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return [task.result() if task in done and not task.exception() else None for task in tasks]

    # --- The summary -----------------------------------------------------------------------

    def summary(self) -> str:
        c, events, stats = self.config, self.stats.events, self.stats
        seconds = (self.ended_at or time.monotonic()) - (self.started_at or time.monotonic())
        outcomes = self.orders.outcomes()
        signed = {
            how: events[f"riders signed in: {how}"]
            for how in ("OTP", "cached token", "minted (OTP throttled)")
        }
        customers_in = sum(
            events[f"customers signed in: {how}"]
            for how in ("OTP", "cached token", "minted (OTP throttled)")
        )
        minutes = self.orders.delivery_minutes()
        earlier = ", ".join(
            f"{key.removeprefix(EARLIER)} {count}"
            for key, count in sorted(outcomes.items())
            if key.startswith(EARLIER)
        )
        lines = [
            f"Simulation summary: {seconds:.0f} s against {c.url} (seed {self.seed})",
            f"  riders      {c.riders} asked; signed in {sum(signed.values())} (OTP "
            f"{signed['OTP']}, cached token {signed['cached token']}, minted "
            f"{signed['minted (OTP throttled)']}); approved by the simulator "
            f"{events['riders approved by the simulator']}; went online "
            f"{events['riders went online']} (online already {events['riders online already']}); "
            f"online at the end {self.online_at_end}",
            f"  customers   {c.customers} asked"
            f"{', and a new one for every booking' if c.new_customer_per_order else ''}; signed "
            f"in {customers_in} (OTP {events['customers signed in: OTP']}, cached token "
            f"{events['customers signed in: cached token']}, minted "
            f"{events['customers signed in: minted (OTP throttled)']})",
            f"  orders      booked {events['orders booked']}; delivered {outcomes['delivered']}; "
            f"failed {outcomes['failed']}; cancelled {outcomes['cancelled']} (by their customer "
            f"{events['orders cancelled by their customer']}, the rest for no rider or by ops); "
            f"closed at shutdown: cancelled {outcomes['cancelled at shutdown']}, failed "
            f"{outcomes['failed at shutdown']}; still open {outcomes['open']}",
        ]
        if minutes:
            lines.append(
                f"              booked -> delivered: p50 {percentile(minutes, 0.5):.1f} min, "
                f"p95 {percentile(minutes, 0.95):.1f} min"
            )
        found = events["live orders of earlier runs found"]
        if earlier or found:
            lines.append(
                f"              orders of earlier runs: {found} found live by their customers; "
                f"finished: {earlier or 'none'}"
            )
        lines += [
            f"  offers      received {events['offers received']}; accepted "
            f"{events['offers accepted']}; declined {events['offers declined (by choice)']} "
            f"by choice and {events[NOT_OURS]} not a simulated customer's; withdrawn while "
            f"the rider looked {events['offers withdrawn before the rider answered']}; gone "
            f"when answered {events['offers gone when answered (taken, expired or withdrawn)']}",
            f"  positions   fixes sent {events['fixes sent over the socket']} over the socket, "
            f"{events['fixes sent over HTTP']} over HTTP",
            f"  sockets     opened: rider {events['rider sockets opened']}, tracking "
            f"{events['tracking sockets opened']}; open at once at most: rider "
            f"{stats.sockets_peak['rider']}, tracking {stats.sockets_peak['tracking']}; dropped "
            f"by the server and reopened {events[SOCKETS_DROPPED]}",
            f"  deliveries  completed {events['deliveries completed']}; taken from the rider "
            f"{events['deliveries taken from the rider (cancelled or unassigned)']}; resumed "
            f"from an earlier run {events['deliveries resumed from an earlier run']}",
            f"  errors      {sum(stats.errors.values())} in all, 5xx answers {stats.server_errors}",
            *stats.error_table(),
            f"  calls       {stats.calls} in all; failed (5xx or no answer) "
            f"{stats.failed_calls}, an error rate of {stats.error_rate:.3%}; retried on a fresh "
            f"connection {sum(n for k, n in events.items() if k.startswith(RETRIED))}",
            *stats.latency_table(),
            *stats.delay_table(),
        ]
        return "\n".join(lines)
