"""Checks of gunicorn (phases 3, 7, 8), read the way gunicorn reads it."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings

from readiness.registry import NotHere, Outcome, Unreachable, check, failed, passed
from readiness.runner import Context

# gunicorn_conf.py empties PROMETHEUS_MULTIPROC_DIR when loaded: it is loaded in a child process
# with a scratch directory there, never in this one (it would wipe the server's metrics).
_LOAD_GUNICORN_CONF = """
import json, multiprocessing, runpy
conf = runpy.run_path("gunicorn_conf.py")
names = ["bind", "workers", "worker_class", "timeout", "graceful_timeout", "keepalive",
         "max_requests", "max_requests_jitter", "preload_app", "accesslog", "errorlog",
         "loglevel"]
hooks = [name for name, value in conf.items()
         if name.islower() and not name.startswith("_") and callable(value)]
print(json.dumps({**{n: conf.get(n) for n in names}, "hooks": hooks,
                  "cpus": multiprocessing.cpu_count()}))
"""


def _gunicorn(context: Context) -> dict:
    def compute() -> dict:
        if not (settings.BASE_DIR / "gunicorn_conf.py").exists():
            raise NotHere("no gunicorn_conf.py in this deployment")
        with tempfile.TemporaryDirectory(prefix="readiness-") as scratch:
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(Path(scratch) / "metrics")}
            result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
                [sys.executable, "-c", _LOAD_GUNICORN_CONF],
                cwd=settings.BASE_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=15,
                check=False,
            )
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
            raise Unreachable(f"gunicorn_conf.py does not load: {lines[-1]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    return context.once("gunicorn", compute)


_GUNICORN_VALUES = [
    (("P3.5", "P7.12"), "timeout", 120, "GUNICORN_TIMEOUT"),
    (("P3.6", "P7.13", "P8.7"), "graceful_timeout", 30, "GUNICORN_GRACEFUL_TIMEOUT"),
    (("P3.7",), "keepalive", 5, None),
    (("P3.8",), "max_requests", 1000, "GUNICORN_MAX_REQUESTS"),
    (("P3.9",), "max_requests_jitter", 100, "GUNICORN_MAX_REQUESTS_JITTER"),
    (("P3.10",), "preload_app", True, None),
    (("P3.11",), "accesslog", "-", None),
    (("P3.12",), "errorlog", "-", None),
]


def _gunicorn_value_check(key: str, expected, variable: str | None):
    def gunicorn_value(context: Context) -> Outcome:
        value = _gunicorn(context)[key]
        if value != expected:
            cause = (
                f" ({variable}={os.environ.get(variable)})"
                if os.environ.get(variable or "")
                else ""
            )
            return failed(f"gunicorn {key}={value}{cause}; the checklist says {expected}")
        return passed(f"gunicorn {key}={value}" + " (stdout/stderr)" * (value == "-"))

    return gunicorn_value


gunicorn_value_checks = [
    check(*ids, name=f"gunicorn_{key}")(_gunicorn_value_check(key, expected, variable))
    for ids, key, expected, variable in _GUNICORN_VALUES
]


@check("P3.1")
def gunicorn_worker_class(context: Context) -> Outcome:
    from uvicorn_worker import UvicornWorker

    from config.workers import UvicornWorker as ProjectWorker

    worker_class = _gunicorn(context)["worker_class"]
    if worker_class != "config.workers.UvicornWorker" or not issubclass(
        ProjectWorker, UvicornWorker
    ):
        return failed(f"gunicorn worker_class={worker_class}, not the uvicorn (ASGI) worker")
    return passed(f"worker_class={worker_class} (uvicorn: HTTP and WebSockets)")


@check("P3.2", "P7.11")
def gunicorn_workers(context: Context) -> Outcome:
    conf = _gunicorn(context)
    auto = conf["cpus"] * 2 + 1
    if os.environ.get("GUNICORN_WORKERS"):
        return passed(f"GUNICORN_WORKERS={conf['workers']} set explicitly (auto: {auto})")
    if conf["workers"] != auto:
        return failed(f"workers={conf['workers']}, not (CPU {conf['cpus']} x 2) + 1 = {auto}")
    return passed(f"workers={auto}: (CPU {conf['cpus']} x 2) + 1")


@check("P3.3", "P7.8")
def gunicorn_port(context: Context) -> Outcome:
    bind = _gunicorn(context)["bind"]
    port = os.environ.get("PORT", "").strip() or "5000"
    if not bind.endswith(f":{port}"):
        return failed(f"gunicorn binds {bind}, not PORT {port}")
    return passed(f"binds port {port} (PORT{'' if os.environ.get('PORT') else ' unset: 5000'})")


@check("P3.4", "P8.10")
def gunicorn_bind(context: Context) -> Outcome:
    bind = _gunicorn(context)["bind"]
    if not bind.startswith("0.0.0.0:"):
        return failed(f"gunicorn binds {bind}, not every interface")
    return passed(f"bind {bind}: every interface, for the load balancer")


@check("P3.13")
def gunicorn_log_level(context: Context) -> Outcome:
    level = str(_gunicorn(context)["loglevel"]).lower()
    if level not in {"debug", "info", "warning", "error", "critical"}:
        return failed(f"gunicorn loglevel={level} is not a level")
    if settings.IS_PRODUCTION and level == "debug":
        return failed("gunicorn loglevel=debug in production")
    source = "GUNICORN_LOG_LEVEL/LOG_LEVEL" if level != "info" else "default info"
    return passed(f"gunicorn loglevel={level} ({source})")


@check("P3.14")
def gunicorn_hooks(context: Context) -> Outcome:
    hooks = set(_gunicorn(context)["hooks"])
    missing = {"on_starting", "when_ready", "on_exit"} - hooks
    if not hooks & {"child_exit", "worker_exit"}:
        missing.add("child_exit (or worker_exit)")  # a worker's end, logged by either
    if missing:
        return failed(f"gunicorn_conf.py lacks the hooks {', '.join(sorted(missing))}")
    return passed(f"lifecycle hooks: {', '.join(sorted(hooks))}")
