"""Starts the whole service on loopback, as deployed: the stack the proof suite attacks.

gunicorn with uvicorn workers (production settings, DEBUG off, JSON logs), a Celery worker on
all three queues and beat, over the tests' PostgreSQL/PostGIS database and a throwaway
redis-server of their own, with Razorpay faked on a local port. Everything listens on
127.0.0.1 and is stopped at the end. The server shares this process's secret key, so access
tokens minted here (riders.tests.factories.access_token) are the ones login would issue.
"""

import contextlib
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connections
from pytest_httpserver import HTTPServer

import devstack.env
from devstack.celery import CeleryProcess, beat_command, worker_command
from devstack.env import local_production_env
from devstack.ports import LOCALHOST, free_port
from devstack.redis import RedisServer
from devstack.wait import wait_for
from devstack.web import Server, start_server
from payments.tests.fake_razorpay import KEY_ID, KEY_SECRET, WEBHOOK_SECRET, FakeRazorpay


def stack_env(*, redis_url: str, database_url: str, razorpay_base: str, **changes) -> dict:
    """The production environment of every process of the stack; `changes` win."""
    defaults = {
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RAZORPAY_KEY_ID": KEY_ID,
        "RAZORPAY_KEY_SECRET": KEY_SECRET,
        "RAZORPAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "RAZORPAY_API_BASE": razorpay_base,
        "SMS_PROVIDER": "dummy",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        # Many sign-ins come from 127.0.0.1 in the load run; the per-phone limits still hold.
        "THROTTLE_OTP_REQUEST_IP": "100000/hour",
        "THROTTLE_OTP_VERIFY_IP": "100000/hour",
        "REMAP_SIGTERM": "SIGQUIT",
        "IS_PRIMARY": "1",
    }
    return local_production_env(**(defaults | changes))


@dataclass
class Stack:
    work_dir: Path
    redis: RedisServer
    razorpay_http: HTTPServer
    razorpay: FakeRazorpay
    env: dict
    web: Server | None = None
    worker: CeleryProcess | None = None
    beat: CeleryProcess | None = None
    # The other stacks' workers this one stopped while it runs (see pause_other_workers).
    _paused: list[CeleryProcess] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.web.base_url

    def ws_url(self, path: str, token: str | None = None) -> str:
        query = f"?token={token}" if token is not None else ""
        return f"ws://{LOCALHOST}:{self.web.port}{path}{query}"

    @property
    def origin(self) -> str:
        return f"http://{LOCALHOST}:{self.web.port}"

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=15, **kwargs)

    def start_web(self, workers: int = 2) -> None:
        self.web = start_server(self.env, self.work_dir / "web", workers=workers)

    def start_worker(self) -> None:
        name = f"proof-{uuid.uuid4().hex[:8]}"
        self.worker = CeleryProcess(
            worker_command(name, concurrency=2), self.env, self.work_dir / f"{name}.log"
        )
        self.worker.wait_for_output(" ready.", 60)

    def start_beat(self) -> None:
        self.beat = CeleryProcess(
            beat_command(), self.env, self.work_dir / f"beat-{uuid.uuid4().hex[:8]}.log"
        )

    def healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return self.web.get("/health/", timeout=5).status_code == 200
        return False

    def wait_healthy(self, timeout: float = 30) -> None:
        wait_for(self.healthy, timeout, "/health/ to answer 200")

    def log_window(self) -> "LogWindow":
        """The web's log lines from now on (both streams)."""
        return LogWindow(self)

    def server_errors(self) -> list[dict]:
        """Every error the web has logged since it started (see LogWindow.errors)."""
        return LogWindow(self, from_start=True).errors()

    def pause_other_workers(self) -> None:
        """Stops (SIGSTOP) the Celery workers of the other running stacks until this one stops.

        Every stack but a database-fault test's reads the same test database, and each runs
        beat, whose sweeps (dispatch every 10 s, offers, stale riders) act on any order or rider
        there: the session's shared stack would dispatch a test's orders with its own worker
        and send the offers to its own Redis, where the test's riders never hear them. So one
        stack's worker runs at a time, the newest; a paused worker's messages wait in its own
        Redis, and it catches up once resumed.
        """
        for stack in RUNNING:
            worker = stack.worker
            if stack is not self and worker is not None and worker.process.poll() is None:
                os.killpg(worker.pid, signal.SIGSTOP)
                self._paused.append(worker)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            RUNNING.remove(self)
        for process in (self.beat, self.worker):
            if process is not None:
                process.close()
        if self.web is not None:
            self.web.stop()
        self.razorpay_http.clear()
        if self.razorpay_http.is_running():
            self.razorpay_http.stop()
        self.redis.kill()
        for worker in self._paused:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGCONT)
        self._paused.clear()


# uvicorn logs this at ERROR when a worker leaves (recycled after GUNICORN_MAX_REQUESTS) and
# cancels the one task that never finishes on its own (config/workers.py): expected.
EXPECTED_AT_WORKER_EXIT = "timeout graceful shutdown exceeded"


class LogWindow:
    """The web server's log lines written since this window opened, stdout and stderr both."""

    def __init__(self, stack: Stack, *, from_start: bool = False):
        self.stack = stack
        self.offsets = (0, 0) if from_start else (len(stack.web.stdout()), len(stack.web.stderr()))

    def lines(self) -> list[str]:
        stdout, stderr = self.stack.web.stdout(), self.stack.web.stderr()
        return (stdout[self.offsets[0] :] + "\n" + stderr[self.offsets[1] :]).splitlines()

    def errors(self) -> list[dict]:
        """Records at ERROR or above: the app's JSON lines on stdout (the formatter names the
        field "level"; a 500 logs one), gunicorn's and uvicorn's on stderr, and any traceback
        printed outside them (an exception in a socket's consumer)."""
        found = []
        for line in self.lines():
            try:
                record = json.loads(line)
            except ValueError:
                if "Traceback" in line:
                    found.append({"level": "ERROR", "logger": "<raw>", "message": line})
                continue
            level = record.get("level") if isinstance(record, dict) else None
            if level in {"ERROR", "CRITICAL"} and EXPECTED_AT_WORKER_EXIT not in record["message"]:
                found.append(record)
        return found

    def server_error_answers(self) -> list[str]:
        """Access-log lines of 5xx answers."""
        return [line for line in self.lines() if "uvicorn.access" in line and '" 5' in line]


# The stacks started and not yet stopped in this test process (the session's shared one, and
# a test's own).
RUNNING: list[Stack] = []


def start_stack(
    work_dir: Path,
    *,
    database_url: str | None = None,
    web_workers: int = 2,
    worker: bool = True,
    beat: bool = True,
    **env_changes,
) -> Stack:
    """Starts Redis, fake Razorpay, web, worker and beat; the caller stops the stack. The other
    running stacks' workers are paused meanwhile (Stack.pause_other_workers)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(work_dir / "redis")
    redis.start()
    razorpay_http = HTTPServer(host=LOCALHOST, port=free_port())
    razorpay_http.start()
    razorpay = FakeRazorpay()
    razorpay.install(razorpay_http)
    env = stack_env(
        WORKER_LIVENESS_DIR=str(work_dir / "liveness"),
        redis_url=redis.url,
        database_url=database_url
        or devstack.env.database_url(connections["default"].settings_dict),
        razorpay_base=f"http://{LOCALHOST}:{razorpay_http.port}/v1",
        **env_changes,
    )
    stack = Stack(work_dir, redis, razorpay_http, razorpay, env)
    stack.pause_other_workers()
    RUNNING.append(stack)
    try:
        stack.start_web(workers=web_workers)
        if worker:
            stack.start_worker()
        if beat:
            stack.start_beat()
        started = time.monotonic()
        stack.wait_healthy(timeout=60 - (time.monotonic() - started))
    except BaseException:
        stack.stop()
        raise
    return stack
