"""Starts gunicorn serving the app (gunicorn_conf.py, as deployed) on a free loopback port, in
a session of its own so its workers are stopped with it; the caller stops it. Also a request
kept in flight while a server is told to stop (SlowRequest).

Two launchers share the spawning and the stopping but stay two, since they differ in what
their callers read and measure: `start_server` for the tests and the proof stack (stdout and
stderr in two files the tests read, ready on any answer from /health/, failures raised, 15 s to
stop) and `start_web` for the benchmarks (one log per server, ready on a 200 from a bench
view, the sync WSGI baseline too, failures end the run, 30 s to stop).
"""

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack.env import PROJECT_DIR, VENV_BIN
from devstack.ports import LOCALHOST, free_port


def spawn_gunicorn(
    env: dict[str, str],
    port: int,
    work_dir: Path,
    *,
    workers: int | None,
    args: list[str],
    stdout,
    stderr,
    code_dir: Path = PROJECT_DIR,
) -> subprocess.Popen:
    """gunicorn -c gunicorn_conf.py `args` in `code_dir`, on `port`, in its own process group.

    `env` is the whole environment; PORT, PROMETHEUS_MULTIPROC_DIR (`prometheus-<port>` in
    `work_dir`) and GUNICORN_WORKERS (unless `workers` is None: gunicorn_conf.py's default) are
    filled in here.
    """
    full_env = {
        **env,
        "PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(work_dir / f"prometheus-{port}"),
    }
    if workers is not None:
        full_env["GUNICORN_WORKERS"] = str(workers)
    return subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "-c", "gunicorn_conf.py", *args],
        cwd=code_dir,
        env=full_env,
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so its workers can be killed with it
    )


def stop_gunicorn(process: subprocess.Popen, grace: float) -> bool:
    """SIGTERM to the master, SIGKILL to its whole group after `grace` s; False when the master
    had already exited."""
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    return True


@dataclass
class Server:
    """A gunicorn serving config.asgi:application; stdout and stderr go to files."""

    process: subprocess.Popen
    port: int
    stdout_path: Path
    stderr_path: Path
    prometheus_dir: Path
    _logs: list = field(default_factory=list, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def request(self, method: str, path: str, *, timeout: float = 10.0, **kwargs) -> httpx.Response:
        """One request on a fresh connection, so any worker may answer it."""
        headers = {"Connection": "close", **kwargs.pop("headers", {})}
        with httpx.Client(base_url=self.base_url, timeout=timeout) as client:
            return client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def json_lines(self, text: str | None = None) -> list[dict]:
        """Every stdout line parsed as JSON; fails on the first line that is not a JSON object."""
        records = []
        for line in (self.stdout() if text is None else text).splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise AssertionError(f"not a JSON log line: {line!r}") from error
            assert isinstance(record, dict), f"not a JSON object: {line!r}"
            records.append(record)
        return records

    def wait_for_log(self, needle: str, *, timeout: float = 5.0) -> str:
        """Waits until the combined output contains `needle` (logs are flushed per line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.output()
            if needle in output:
                return output
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never appeared in the server output:\n{self.output()}")

    def stop(self) -> None:
        if not stop_gunicorn(self.process, grace=15):
            # The master is gone; make sure no worker of its group lingers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        for handle in self._logs:
            handle.close()


def start_server(
    env: dict[str, str],
    work_dir: Path,
    *,
    workers: int | None = 1,
    ready_path: str = "/health/",
    ready_timeout: float = 40.0,
    app: str = "config.asgi:application",
    code_dir: Path = PROJECT_DIR,
) -> Server:
    """Starts gunicorn with gunicorn_conf.py and waits until `ready_path` answers anything.

    `env` is the whole environment (see devstack.env.base_env; the rest as `spawn_gunicorn`).
    `code_dir` holds the code served and its gunicorn_conf.py (another release's, for the
    rollback test). The caller stops the server.
    """
    port = free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    stdout_path = work_dir / f"gunicorn-{port}.out"
    stderr_path = work_dir / f"gunicorn-{port}.err"
    stdout_file = stdout_path.open("wb")
    stderr_file = stderr_path.open("wb")
    process = spawn_gunicorn(
        env,
        port,
        work_dir,
        workers=workers,
        args=[app],
        stdout=stdout_file,
        stderr=stderr_file,
        code_dir=code_dir,
    )
    prometheus_dir = work_dir / f"prometheus-{port}"
    server = Server(process, port, stdout_path, stderr_path, prometheus_dir)
    server._logs = [stdout_file, stderr_file]
    deadline = time.monotonic() + ready_timeout
    while True:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(
                f"gunicorn exited with {process.returncode} before answering:\n{server.output()}"
            )
        try:
            server.get(ready_path, timeout=10)
            return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            output = server.output()
            server.stop()
            raise RuntimeError(f"gunicorn did not answer {ready_path} in time:\n{output}")
        time.sleep(0.2)


@dataclass
class WebServer:
    """A benchmark's gunicorn; stdout and stderr go to one log, `<name>.log`."""

    name: str
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: children of the master."""
        return child_pids(self.process.pid)

    def stop(self) -> None:
        stop_gunicorn(self.process, grace=30)


def start_web(
    name: str,
    env: dict[str, str],
    work_dir: Path,
    *,
    workers: int,
    sync_wsgi: bool = False,
    ready_path: str = "/bench/json/",
) -> WebServer:
    """gunicorn with gunicorn_conf.py: uvicorn workers serving the ASGI app, or (`sync_wsgi`)
    sync workers serving the WSGI app, the baseline. Waits until `ready_path` answers 200."""
    port = free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"{name}.log"
    if sync_wsgi:
        args = ["--worker-class", "sync", "config.wsgi:application"]
    else:
        args = ["config.asgi:application"]
    with log_path.open("wb") as log:
        process = spawn_gunicorn(
            env, port, work_dir, workers=workers, args=args, stdout=log, stderr=subprocess.STDOUT
        )
    server = WebServer(name, process, port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: {name} exited:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(server.base_url + ready_path, timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise SystemExit(f"bench: {name} did not answer {ready_path}:\n{log_path.read_text()[-4000:]}")


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` (a gunicorn master's workers, a Celery worker's
    pool), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            pids.append(int(entry.name))
    return sorted(pids)


class SlowRequest:
    """GET /bench/slow/?seconds=N (bench.settings) in a thread: a request in flight while the
    server is told to stop. `finish()` returns its response, or raises what the client saw."""

    def __init__(self, port: int, seconds: float = 4.0):
        self.url = f"http://{LOCALHOST}:{port}/bench/slow/?seconds={seconds}"
        self.response: httpx.Response | None = None
        self.error: httpx.HTTPError | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.response = httpx.get(self.url, timeout=40)
        except httpx.HTTPError as error:
            self.error = error

    def finish(self, timeout: float = 40) -> httpx.Response:
        self.thread.join(timeout)
        if self.error is not None:
            raise AssertionError(f"the request in flight failed: {self.error!r}")
        assert self.response is not None, "the request in flight never ended"
        return self.response
