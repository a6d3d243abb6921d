"""The uvicorn worker that gunicorn runs (see gunicorn_conf.py)."""

from uvicorn_worker import UvicornWorker as _UvicornWorker


class UvicornWorker(_UvicornWorker):
    # Django has no lifespan support; "off" avoids a misleading log line at every boot.
    # uvicorn's loggers reuse gunicorn's handlers, which mask ?token= values (gunicorn_conf.py).
    CONFIG_KWARGS = {**_UvicornWorker.CONFIG_KWARGS, "lifespan": "off", "proxy_headers": True}
