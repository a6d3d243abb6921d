"""What a run counts: call latencies by kind, answers by status, errors by kind, events, sockets
held open, how long a rider's fix takes to reach the customer watching; and the tables of the
summary printed at the end. The one place for percentiles: `manage.py simulate` and the proof
suite's load test (proof/test_load.py) report through it."""

import contextlib
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

logger = logging.getLogger("simulator")

# Each kind of error is logged this many times; later ones are only counted.
LOGGED_PER_KIND = 3


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (share 0.5 = median); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)  # (kind, HTTP status or 0) -> count
    errors: Counter = field(default_factory=Counter)  # "kind: what" -> count
    events: Counter = field(default_factory=Counter)  # "riders online", "offers accepted", ...
    # One-way delays by kind, not calls: "fix -> tracking socket" (the fix's recorded_at to the
    # moment its location frame reached a customer's /ws/delivery/; one clock, one host).
    delays: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sockets_open: Counter = field(default_factory=Counter)  # "rider", "tracking" -> open now
    sockets_peak: Counter = field(default_factory=Counter)  # ... -> most open at once
    socket_seconds: Counter = field(default_factory=Counter)  # ... -> seconds held open, summed
    # Sockets that ended while held (socket_held with the socket): (who, close code) -> count.
    # closed_by_server: the server closed first (its close frame came before ours, or the
    # connection went without one: 1006); closed_by_client_error: this side failed it with a
    # code other than 1000 (e.g. 1011, its keepalive ping unanswered). A socket the client
    # closes normally (the run stopping, the rider's loop ending) is in neither.
    closed_by_server: Counter = field(default_factory=Counter)
    closed_by_client_error: Counter = field(default_factory=Counter)

    def call(self, kind: str, seconds: float, status: int, code: str | None = None) -> None:
        """One HTTP call (status 0: no answer) or WebSocket round trip, and how it ended."""
        self.latencies[kind].append(seconds)
        self.statuses[(kind, status)] += 1
        if status == 0 or status >= 400:
            what = f"HTTP {status}" if status else "no answer"
            self.error(f"{kind}: {what}{f' {code}' if code else ''}")

    def socket_opened(self, kind: str, seconds: float) -> None:
        """A WebSocket handshake that succeeded (101), timed like a call."""
        self.latencies[kind].append(seconds)
        self.statuses[(kind, 101)] += 1

    def socket_refused(self, kind: str, error: Exception) -> None:
        """A WebSocket that did not open: an HTTP status at the handshake counts as an answer
        (a 500 there is a server error like any other), anything else as no answer."""
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", 0) or 0
        self.statuses[(kind, status)] += 1
        what = f"HTTP {status}" if status else f"no answer ({type(error).__name__})"
        self.error(f"{kind}: {what}", str(error))

    @contextlib.contextmanager
    def socket_held(self, who: str, socket=None) -> Iterator[None]:
        """While one of `who`'s sockets is open ("rider", "tracking"), for the peak count and
        the socket-seconds; with the socket, who closed it is noted at the end (socket_ended)."""
        self.sockets_open[who] += 1
        self.sockets_peak[who] = max(self.sockets_peak[who], self.sockets_open[who])
        started = time.monotonic()
        try:
            yield
        finally:
            self.sockets_open[who] -= 1
            self.socket_seconds[who] += time.monotonic() - started
            if socket is not None:
                self.socket_ended(who, socket)

    def socket_ended(self, who: str, socket) -> None:
        """Notes who closed a socket (websockets' ClientConnection) that has stopped being read:
        only observes, never closes or waits."""
        protocol = getattr(socket, "protocol", None)
        if protocol is None:
            return
        received, sent = protocol.close_rcvd, protocol.close_sent
        if received is not None and (sent is None or protocol.close_rcvd_then_sent):
            self.closed_by_server[(who, received.code)] += 1
        elif received is None and sent is None and protocol.state.name == "CLOSED":
            self.closed_by_server[(who, 1006)] += 1  # gone without a close frame
        elif sent is not None and received is None and sent.code != 1000:
            self.closed_by_client_error[(who, sent.code)] += 1

    def delay(self, kind: str, seconds: float) -> None:
        self.delays[kind].append(seconds)

    def error(self, key: str, detail: str = "") -> None:
        self.errors[key] += 1
        if self.errors[key] <= LOGGED_PER_KIND:
            suffix = f" ({detail})" if detail else ""
            more = " (further ones are only counted)" if self.errors[key] == LOGGED_PER_KIND else ""
            logger.warning("%s%s%s", key, suffix, more)

    def count(self, event: str, by: int = 1) -> None:
        self.events[event] += by

    @property
    def server_errors(self) -> int:
        return sum(count for (_, status), count in self.statuses.items() if status >= 500)

    @property
    def calls(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed_calls(self) -> int:
        """Calls the server failed: a 5xx, or no answer at all (refused, cut, timed out)."""
        return sum(
            count for (_, status), count in self.statuses.items() if status == 0 or status >= 500
        )

    @property
    def error_rate(self) -> float:
        """Failed calls over all calls; 4xx answers are the client's business, not failures."""
        return self.failed_calls / max(1, self.calls)

    def latency_table(self) -> list[str]:
        lines = [f"  {'call':<28}{'count':>7}{_PERCENTILE_HEADINGS}  answers"]
        for kind in sorted(self.latencies):
            answers = ", ".join(
                f"{status or 'no answer'}: {count}"
                for (name, status), count in sorted(self.statuses.items())
                if name == kind
            )
            lines.append(_row(kind, self.latencies[kind], answers))
        return lines

    def delay_table(self) -> list[str]:
        if not self.delays:
            return []
        lines = [f"  {'delay':<28}{'count':>7}{_PERCENTILE_HEADINGS}"]
        lines += [_row(kind, self.delays[kind]) for kind in sorted(self.delays)]
        return lines

    def error_table(self) -> list[str]:
        return [f"  {count:>6}  {key}" for key, count in self.errors.most_common()]


_PERCENTILE_HEADINGS = f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"


def _row(kind: str, values: list[float], after: str = "") -> str:
    cells = "".join(f"{percentile(values, share) * 1000:>9.0f}" for share in (0.5, 0.95, 0.99))
    return f"  {kind:<28}{len(values):>7}{cells}  {after}".rstrip()
