"""The uvicorn worker that gunicorn runs (see gunicorn_conf.py)."""

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


class UvicornWorker(_UvicornWorker):
    # Django has no lifespan support; "off" avoids a misleading log line at every boot.
    # uvicorn's loggers reuse gunicorn's handlers, which mask ?token= values (gunicorn_conf.py).
    # ws_max_size: the sockets take 4 KB frames (delivery.consumers.MAX_FRAME_BYTES), answering
    # bigger ones with an error frame; past 64 KB uvicorn closes the socket (1009) instead of
    # buffering up to its default 16 MB per frame.
    # timeout_graceful_shutdown: a worker leaving (recycled after GUNICORN_MAX_REQUESTS, or a
    # deploy's SIGTERM) closes its sockets with 1012 and gives requests in flight 10 s; then
    # it cancels what is left and goes. Without it, one task per worker never finished (seen
    # in the proof load run) and held the worker, and the capacity, until gunicorn's 30 s
    # graceful_timeout; uvicorn logs the cancel as an ERROR ("Cancel 1 running task(s)").
    CONFIG_KWARGS = {
        **_UvicornWorker.CONFIG_KWARGS,
        "lifespan": "off",
        "proxy_headers": True,
        "ws": RestartingWebSocketProtocol,
        "ws_max_size": 64 * 1024,
        "timeout_graceful_shutdown": 10,
    }
