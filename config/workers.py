"""The uvicorn worker that gunicorn runs (see gunicorn_conf.py)."""

from uvicorn_worker import UvicornWorker as _UvicornWorker


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
        "ws_max_size": 64 * 1024,
        "timeout_graceful_shutdown": 10,
    }
