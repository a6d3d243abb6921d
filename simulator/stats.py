"""What a run counts: call latencies by kind, answers by status, errors by kind, events; and the
summary printed at the end."""

import logging
import math
from collections import Counter, defaultdict
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

    def latency_table(self) -> list[str]:
        lines = [f"  {'call':<28}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}  answers"]
        for kind in sorted(self.latencies):
            values = self.latencies[kind]
            answers = ", ".join(
                f"{status or 'no answer'}: {count}"
                for (name, status), count in sorted(self.statuses.items())
                if name == kind
            )
            lines.append(
                f"  {kind:<28}{len(values):>7}{percentile(values, 0.5) * 1000:>9.0f}"
                f"{percentile(values, 0.95) * 1000:>9.0f}  {answers}"
            )
        return lines

    def error_table(self) -> list[str]:
        return [f"  {count:>6}  {key}" for key, count in self.errors.most_common()]
