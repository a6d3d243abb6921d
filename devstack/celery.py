"""Starts real `celery worker` and `celery beat` processes: the tests' (on the test database
pytest-django created and the tests' own Redis database), and those of the proof stack and the
soak (given their whole environment).

Each process runs in its own session (process group) with its output in a file, so a test
can read its log lines, SIGKILL the whole group (a container OOM kill), and always clean up.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import connections

from devstack.env import PROJECT_DIR, VENV_BIN, database_url
from devstack.wait import wait_for

CELERY = str(VENV_BIN / "celery")
TASKS_MODULE = "core.tests.celery_tasks"
ALL_QUEUES = "high,default,low"


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def flush_broker() -> None:
    """Empties the tests' own Redis database (REDIS_URL, e.g. db 6), never another one."""
    database = urlsplit(settings.REDIS_URL).path.strip("/")
    if not settings.IS_TEST or database in {"", "0"}:
        raise RuntimeError(f"refusing to flush {settings.REDIS_URL}: give the tests their own db")
    redis_client().flushdb()


# Where the test workers' canary watchdogs write (core/worker_liveness.py): not the shared
# default under /tmp that `make run` uses.
LIVENESS_DIR = tempfile.mkdtemp(prefix="delivery-test-liveness-")


def process_env(**extra: str) -> dict[str, str]:
    """A test worker's or beat's environment: this process's, on the test database pytest-django
    created and the tests' own Redis database; `extra` wins."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "DJANGO_TEST_")) and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        DJANGO_ENV="test",
        DJANGO_ENV_FILE="",
        DATABASE_URL=database_url(connections["default"].settings_dict),
        REDIS_URL=settings.REDIS_URL,
        CELERY_TASK_ALWAYS_EAGER="false",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        WORKER_LIVENESS_DIR=LIVENESS_DIR,
    )
    env.update(extra)
    return env


def beat_heartbeat_recorded(redis_url: str) -> bool:
    """Whether a worker has run beat's heartbeat task (queued when beat starts) on that Redis."""
    client = redis.Redis.from_url(redis_url)
    try:
        return bool(client.keys("*celery-beat:heartbeat"))
    finally:
        client.close()


class CeleryProcess:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.node = ""  # a worker's node name, e.g. test-1a2b3c4d@host
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            args,
            cwd=PROJECT_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches the pool children
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict]:
        lines = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    lines.append(record)
        return lines

    def wait_for_output(self, text: str, timeout: float) -> None:
        def seen():
            if self.process.poll() is not None and text not in self.output():
                raise AssertionError(
                    f"{self.args[3]} exited ({self.process.returncode}):\n{self.output()[-3000:]}"
                )
            return text in self.output()

        try:
            wait_for(seen, timeout, f"{text!r} in the output of {' '.join(self.args[:4])}")
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- output ---\n{self.output()[-3000:]}") from None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends `sig` to the whole group (main process and pool children) and reaps it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def close(self) -> None:
        """Finalizer: nothing of this process may outlive the test."""
        if self.process.poll() is None:
            self.kill(signal.SIGKILL)
        else:
            # The main process is gone; make sure no child of its group lingers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


def worker_command(
    name: str, *, concurrency: int, queues: str = ALL_QUEUES, extra: tuple[str, ...] = ()
) -> list[str]:
    """`celery worker` of the config app on `queues`, named `name`@host, logging at INFO."""
    return [
        *(CELERY, "-A", "config", "worker", "-Q", queues, "-n", f"{name}@%h"),
        *("--concurrency", str(concurrency), "--loglevel", "INFO", *extra),
        # Worker-to-worker chatter only (startup sync, events); it slows start-up and does
        # not take part in delivering, acknowledging or requeueing tasks.
        *("--without-mingle", "--without-gossip"),
    ]


def beat_command(app: str = "config") -> list[str]:
    return [CELERY, "-A", app, "beat", "--loglevel", "INFO"]


def start_worker(
    log_dir: Path, queues: str = ALL_QUEUES, ready_timeout: float = 40, **env: str
) -> CeleryProcess:
    """A prefork worker with one pool process, as deployed but small, ready to consume."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    worker = CeleryProcess(
        worker_command(
            name, concurrency=1, queues=queues, extra=("--pool", "prefork", "-I", TASKS_MODULE)
        ),
        process_env(**env),
        log_dir / f"{name}.log",
    )
    worker.node = f"{name}@{socket.gethostname()}"
    try:
        worker.wait_for_output(" ready.", ready_timeout)
    except BaseException:
        worker.close()
        raise
    return worker


def start_beat(log_dir: Path, app: str = "config", name: str = "beat", **env: str):
    return CeleryProcess(
        beat_command(app), process_env(**env), log_dir / f"{name}-{uuid.uuid4().hex[:8]}.log"
    )
