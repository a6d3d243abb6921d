"""The load generator of `make bench`, in Python, the same for every subject and baseline.

One asyncio loop (uvloop) in the bench process, on the same 2 cores as the servers:
- `HttpClient`: HTTP/1.1 over a raw asyncio protocol with httptools' parser (the one uvicorn
  uses), pre-encoded requests, keep-alive when the server allows it and a new connection when
  it does not (gunicorn's sync workers close every connection, as they do for wrk);
- `closed_loop`: N virtual users, each doing one unit of work (a request, a WebSocket frame and
  its reply, a quote and an order) after the other with no think time, for a fixed time; the
  rate is the units finished in the measured window divided by its length;
- WebSocket clients are `websockets` (asyncio), without compression, as OkHttp and
  URLSession send by default.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httptools
import websockets.asyncio.client
from websockets.exceptions import WebSocketException


class HttpError(Exception):
    pass


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.body: list[bytes] = []
        self.keep_alive = True

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(HttpError(f"bad response: {error}"))

    def connection_lost(self, exc) -> None:
        self.transport = None
        self._fail(HttpError("connection closed by the server"))

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    # httptools callbacks

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())


class HttpClient:
    """One client connection, reopened whenever the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._connection: _Connection | None = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        connection = self._connection
        if connection is None or connection.transport is None:
            _, connection = await loop.create_connection(_Connection, self.host, self.port)
            self._connection = connection
        connection.waiter = loop.create_future()
        connection.body = []
        connection.transport.write(data)
        try:
            status = await connection.waiter
        except BaseException:
            self.close()
            raise
        body = b"".join(connection.body)
        if not connection.keep_alive:
            self.close()
        return status, body

    def close(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        self._connection = None


def http_request(
    method: str, path: str, port: int, *, body: bytes = b"", headers: dict | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ws_connect(url: str, **kwargs):
    return websockets.asyncio.client.connect(
        url, compression=None, open_timeout=60, max_queue=None, **kwargs
    )


@dataclass
class Result:
    """What one closed-loop measurement saw."""

    seconds: float = 0.0
    done: int = 0  # units that succeeded within the window
    latencies: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process group

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def merge(self, other: "Result") -> None:
        self.seconds += other.seconds
        self.done += other.done
        self.latencies += other.latencies
        self.failures.update(other.failures)
        for name, used in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + used

    def cpu_per_unit(self) -> str:
        """CPU milliseconds per unit of work, per process group."""
        if not self.done or not self.cpu:
            return ""
        return " ".join(f"{name} {1000 * used / self.done:.2f}" for name, used in self.cpu.items())


# A unit of work: returns None when it succeeded, or a short reason why it did not.
Unit = Callable[[], Awaitable[str | None]]


async def closed_loop(units: list[Unit], *, warmup: float, seconds: float, meter=None) -> Result:
    """Runs every unit over and over at once, each after its last with no pause; counts the
    units started and finished inside [warmup, warmup + seconds). `meter` (bench.measure.CpuMeter)
    measures the CPU time each group of processes used over that window."""
    begin = time.perf_counter()  # uvloop's loop.time() moves in whole milliseconds
    start, end = begin + warmup, begin + warmup + seconds
    result = Result(seconds=seconds)

    async def metering() -> None:
        await asyncio.sleep(warmup)
        meter.start()
        await asyncio.sleep(seconds)
        result.cpu = meter.stop()

    async def user(unit: Unit) -> None:
        while (started := time.perf_counter()) < end:
            try:
                failure = await unit()
            except (OSError, HttpError, WebSocketException) as error:
                failure = type(error).__name__
                await asyncio.sleep(0.05)
            finished = time.perf_counter()
            if started >= start and finished <= end:
                if failure is None:
                    result.done += 1
                    result.latencies.append(finished - started)
                else:
                    result.failures[failure] += 1

    await asyncio.gather(*(user(unit) for unit in units), *([metering()] if meter else []))
    return result
