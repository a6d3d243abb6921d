"""Gunicorn serving the ASGI app (HTTP and WebSockets) through uvicorn workers.

Every value here can be changed from the environment; checklist phase 3 lists the defaults.
"""

import gc
import multiprocessing
import os
import shutil
from pathlib import Path


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be positive, not {raw!r}")
    return value


PORT = _int_env("PORT", 5000)
bind = f"0.0.0.0:{PORT}"
# Two roles of one server. `web` serves the API (and the sockets too, for a deployment that
# runs no `sockets` role); `sockets` serves the WebSockets, which live for hours.
ROLE = os.environ.get("SERVER_ROLE", "web").strip() or "web"
if ROLE not in {"web", "sockets"}:
    raise SystemExit(f"SERVER_ROLE must be web or sockets, not {ROLE!r}")
SOCKETS = ROLE == "sockets"
timeout = _int_env("GUNICORN_TIMEOUT", 120)
keepalive = _int_env("GUNICORN_KEEPALIVE", 5)
if not SOCKETS:
    worker_class = "config.workers.UvicornWorker"
    workers = _int_env("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1)
    graceful_timeout = _int_env("GUNICORN_GRACEFUL_TIMEOUT", 30)
    # Recycle workers now and then so a slow leak can never grow without bound; the jitter
    # keeps them from all restarting at the same moment.
    max_requests = _int_env("GUNICORN_MAX_REQUESTS", 1000)
    max_requests_jitter = _int_env("GUNICORN_MAX_REQUESTS_JITTER", 100)
else:
    # Never recycled by request count: each recycle would close every socket the worker
    # holds. A worker past SOCKETS_MAX_MEMORY_MB leaves instead, and a leaving worker (that,
    # or a deploy's SIGTERM) closes its sockets one by one over SOCKETS_DRAIN_SECONDS with
    # 1012 "reconnect", so its clients come back spread out (config.workers.SocketsWorker).
    worker_class = "config.workers.SocketsWorker"
    workers = _int_env("GUNICORN_WORKERS", multiprocessing.cpu_count())
    max_requests = 0
    drain_seconds = _int_env("SOCKETS_DRAIN_SECONDS", 20)
    _int_env("SOCKETS_MAX_MEMORY_MB", 512)  # checked here, read by the worker
    graceful_timeout = _int_env("GUNICORN_GRACEFUL_TIMEOUT", drain_seconds + 15)
    if graceful_timeout <= drain_seconds + 10:
        raise SystemExit(
            "GUNICORN_GRACEFUL_TIMEOUT must exceed SOCKETS_DRAIN_SECONDS by more than 10 s "
            "(the drain, then 10 s for what is left)"
        )
# Load Django once in the master: workers fork with it imported (less memory, faster boots,
# and a broken configuration stops the master instead of looping worker restarts).
preload_app = True
accesslog = "-"  # stdout
errorlog = "-"  # stderr
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", os.environ.get("LOG_LEVEL", "info")).lower()
# Proxies whose X-Forwarded-* headers are believed (client IP for throttles, scheme for HSTS).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = f"delivery-{ROLE}"
# gunicorn's runtime control socket lives in $HOME and would collide between servers.
control_socket_disable = True

# Several workers share one /metrics: prometheus_client writes per-process files here and the
# metrics view adds them up. Must be set before Django (and prometheus_client) is imported.
PROMETHEUS_DIR = Path(
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", f"/tmp/delivery-prometheus-{PORT}")  # noqa: S108
)
# Files left by an earlier server would be added to this one's counts. This file is read
# before the app is preloaded, so this runs before any metric is created.
shutil.rmtree(PROMETHEUS_DIR, ignore_errors=True)
PROMETHEUS_DIR.mkdir(parents=True, exist_ok=True)

# Same rule as settings.LOG_FORMAT: json in production, console elsewhere, unless set.
_json = os.environ.get("LOG_FORMAT") or (
    "json" if os.environ.get("DJANGO_ENV", "").strip().lower() == "production" else "console"
)
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_tokens": {"()": "config.logs.RedactQueryTokens"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "console": {"format": "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"},
    },
    "handlers": {
        "access": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json" if _json == "json" else "console",
            "filters": ["redact_tokens"],
        },
        "error": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "json" if _json == "json" else "console",
            "filters": ["redact_tokens"],
        },
    },
    "root": {"level": "INFO", "handlers": ["error"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["error"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
}


def on_starting(server):
    server.log.info("starting gunicorn on %s with %s workers", bind, workers)


def when_ready(server):
    from config.startup import log_startup_summary

    log_startup_summary(ROLE)
    # Garbage collection, tuned for workers holding thousands of open sockets. Python's default
    # thresholds ran a full collection every few seconds, each walking 200,000 objects (the
    # sockets' consumers and protocol state) and stalling a worker's event loop for 150-200 ms:
    # the p99 from a rider's ping to the customer's socket was 270-490 ms. The preloaded app
    # (Django and every library, about 120,000 objects) lives as long as the process: frozen
    # before the workers fork, it is never walked, nor copied out of the pages they share. A
    # sockets worker collects its old generation after 100 middle collections, so rarely (its
    # sockets leave no cycles behind: delivery/tests/test_socket_garbage.py). A web worker does
    # after 10, Python's default: its requests leave cycles (Django caches a one-to-one pair on
    # both sides), and at 100 a worker grew 97 -> 162 MiB over 6,000 requests before its first
    # full collection, so a worker recycled at 1,000 never collected them; at 10 it levels off
    # at 121 MiB within 2,000 (python -m bench.web_memory). The young generation is not made
    # larger: a young collection walks every young object still alive, and with 2,000 sockets
    # each waiting on its next message many are (a pending task, its coroutine and context per
    # socket): at 50,000 each young collection stalled the loop for 40-170 ms; at 2,000 most
    # take under 5 ms and the longest stall of the benchmark's watch was 48-56 ms, against
    # 150-168 ms, for about 0.5 s more collecting a minute (docs/performance.md). /metrics shows
    # each worker's collections (python_gc_pause_seconds, core/gc_pauses.py).
    gc.freeze()
    gc.set_threshold(2_000, 10, 100 if SOCKETS else 10)
    server.log.info("ready: listening on %s", bind)


def post_fork(server, worker):
    # Each worker times its own garbage collections for /metrics (python_gc_pause_seconds),
    # and counts its waits for a database connection (db_pool_*, core/db_pool_metrics.py).
    from core import db_pool_metrics, gc_pauses

    gc_pauses.start()
    db_pool_metrics.start()
    server.log.info("worker %s started", worker.pid)


def worker_int(worker):
    worker.log.info("worker %s interrupted", worker.pid)


def worker_abort(worker):
    worker.log.warning("worker %s aborted (timeout after %ss)", worker.pid, timeout)


def child_exit(server, worker):
    # Logged by the master once the worker process is gone: gunicorn's worker_exit hook runs
    # inside the worker, and a uvicorn worker stopped by SIGTERM exits before it logs.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    server.log.info("worker %s stopped", worker.pid)


def on_exit(server):
    server.log.info("gunicorn stopped")
