"""The uvicorn workers that gunicorn runs (see gunicorn_conf.py): UvicornWorker for the `web`
role, SocketsWorker for the `sockets` role."""

import asyncio
import logging
import os
import random
import signal
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn_worker import UvicornWorker as _UvicornWorker


class RestartingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, except for a handshake in flight when the worker leaves.

    A leaving worker (recycled after GUNICORN_MAX_REQUESTS, or a deploy's SIGTERM) closes its
    open sockets with 1012 (service restart), which every client takes as "reconnect". A socket
    whose handshake was still in the app (signing the user in, joining groups) got an HTTP 500
    instead: a server error, under load several per recycle, since the sockets of the worker
    that left a moment earlier are just reconnecting. Here the app finishes its answer; an
    accept is then followed at once by the same 1012 close, a refusal goes out as it is.
    """

    close_once_accepted = False

    def shutdown(self) -> None:
        if self.handshake_initiated and not self.handshake_complete and not self.disconnected:
            self.close_once_accepted = True
            return
        super().shutdown()

    async def send(self, message) -> None:
        await super().send(message)
        if self.close_once_accepted and self.handshake_complete and not self.close_sent:
            self.close_once_accepted = False
            super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # websockets' sans-I/O protocol is told the stream has ended (uvicorn does not tell
        # it), and its parser, a generator that holds the protocol, is ended: a reference cycle
        # otherwise, with the socket's zlib state in it (about 150 KiB of C memory, which
        # garbage collection does not count), until a full collection: 37 KiB per socket
        # lifetime in bench.sockets_memory, and flat with this.
        self.conn.receive_eof()
        self.conn.parser.close()


class LingeringHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, except for an idle kept-alive connection when the worker leaves.

    uvicorn closes such a connection at once; a request the client (a load balancer's pool, an
    app's HTTP client) was sending on it at that moment, or had sent on a connection accepted
    but not yet read, is never answered: "connection reset" or a 502 at each recycle (seen: up
    to 7 in 360 calls with two workers recycled every 25 requests). Here the connection stays
    open LINGER_SECONDS: a request arriving in that time is answered with "Connection: close"
    (an upgrade to a socket is accepted and closed at once with 1012, "reconnect"); the
    connection is closed when that answer is sent, or when the time is up without one.
    """

    LINGER_SECONDS = 1.0
    leaving = False

    def shutdown(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            super().shutdown()  # a request in flight: answered, then the connection closed
            return
        self.leaving = True
        self.loop.call_later(self.LINGER_SECONDS, self._close_if_idle)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.leaving and self.cycle is not None:
            self.cycle.keep_alive = False

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        if self.leaving:
            self.transport.get_protocol().shutdown()
        # The socket's own protocol has the connection now. uvicorn drops the parser, which
        # holds this protocol's callbacks (a reference cycle), when a connection is lost, but not
        # here: each socket would leave this protocol to a full garbage collection.
        self.parser = None

    def _close_if_idle(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.transport.get_protocol() is self and not self.transport.is_closing():
            self.transport.close()


class UvicornWorker(_UvicornWorker):
    # Django has no lifespan support; "off" avoids a misleading log line at every boot.
    # uvicorn's loggers reuse gunicorn's handlers, which mask ?token= values (gunicorn_conf.py).
    # ws_max_size: the sockets take 4 KB frames (delivery.consumers.MAX_FRAME_BYTES), answering
    # bigger ones with an error frame; past 64 KB uvicorn closes the socket (1009) instead of
    # buffering up to its default 16 MB per frame.
    # timeout_graceful_shutdown (set in __init__): a worker leaving (recycled after
    # GUNICORN_MAX_REQUESTS, or a deploy's SIGTERM) closes its sockets with 1012 and gives
    # requests in flight 10 s (less when GUNICORN_GRACEFUL_TIMEOUT is under 12 s); then it
    # cancels what is left, logged as an ERROR ("Cancel 1 running task(s)"), and goes before
    # gunicorn's own deadline would SIGKILL it. Without it, one task per worker never finished
    # (seen in the proof load run, with the sockets on the web role) and held the worker, and
    # the capacity, until that deadline; API requests take well under a second.
    CONFIG_KWARGS = {
        **_UvicornWorker.CONFIG_KWARGS,
        "lifespan": "off",
        "http": LingeringHttpProtocol,
        "proxy_headers": True,
        "ws": RestartingWebSocketProtocol,
        "ws_max_size": 64 * 1024,
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = max(1, min(10, self.cfg.graceful_timeout - 2))

    async def _serve(self) -> None:
        try:
            await super()._serve()
        finally:
            # realtime messages the last requests handed to this loop (core.realtime.send_many)
            from core import realtime

            await realtime.flush()


logger = logging.getLogger("uvicorn.error")


class DrainingWebSocketProtocol(RestartingWebSocketProtocol):
    """A leaving sockets worker closes each socket with 1012 after a random delay within
    SOCKETS_DRAIN_SECONDS, not all at once: its clients reconnect spread out over the window
    (to the other workers and replicas) instead of in one burst, each once."""

    drain_seconds = 20.0

    def shutdown(self) -> None:
        if self.handshake_initiated and not self.handshake_complete and not self.disconnected:
            super().shutdown()  # a handshake in flight: answered, then closed at once
            return
        delay = random.uniform(0, self.drain_seconds)  # noqa: S311 - jitter, not a secret
        asyncio.get_running_loop().call_later(delay, self._drain_now)

    def _drain_now(self) -> None:
        if not self.disconnected and not self.close_sent:
            super().shutdown()


class SocketsWorker(UvicornWorker):
    """The `sockets` role's worker: never recycled by request count (gunicorn_conf.py), it
    leaves once its memory passes SOCKETS_MAX_MEMORY_MB (checked at each of gunicorn's
    heartbeats, every GUNICORN_TIMEOUT / 2 s, once it has been up SOCKETS_MIN_UPTIME_SECONDS),
    and drains its sockets slowly when it leaves."""

    def __init__(self, *args, **kwargs):
        drain = float(os.environ.get("SOCKETS_DRAIN_SECONDS") or 20)
        # Each socket closed within the drain; gunicorn_conf.py makes the graceful timeout (and
        # so uvicorn's, 2 s less) longer than the drain by more than 10 s.
        self.ws_protocol = type("Draining", (DrainingWebSocketProtocol,), {"drain_seconds": drain})
        self.max_memory_bytes = int(os.environ.get("SOCKETS_MAX_MEMORY_MB", "512")) * 2**20
        # A limit set below what a fresh worker uses would otherwise restart workers in a loop.
        self.min_uptime = float(os.environ.get("SOCKETS_MIN_UPTIME_SECONDS", "300"))
        self.born = time.monotonic()
        self.leaving = False
        super().__init__(*args, **kwargs)
        self.config.ws = self.ws_protocol
        self.config.timeout_graceful_shutdown = self.cfg.graceful_timeout - 2

    async def callback_notify(self) -> None:
        await super().callback_notify()
        if self.leaving or time.monotonic() - self.born < self.min_uptime:
            return
        used = resident_bytes()
        if used > self.max_memory_bytes:
            self.leaving = True
            logger.warning(
                "sockets worker %s uses %d MiB, past SOCKETS_MAX_MEMORY_MB (%d): leaving, "
                "its sockets drained over the drain window",
                os.getpid(),
                used // 2**20,
                self.max_memory_bytes // 2**20,
            )
            os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's own graceful exit; gunicorn forks anew


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
