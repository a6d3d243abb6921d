"""Real processes for end-to-end tests: the service under gunicorn, throwaway Redis, dead ports.

Everything listens on 127.0.0.1 only. Each helper is stopped by its owner (usually a fixture
finalizer); nothing here touches the machine's shared PostgreSQL or Redis.
"""

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

PROJECT_DIR = Path(__file__).resolve().parents[2]
VENV_BIN = PROJECT_DIR / ".venv" / "bin"
LOCALHOST = "127.0.0.1"

# One line per request from httpx/httpcore would bury the server output shown on failures.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def database_url(settings_dict: dict, *, host: str | None = None, port: int | None = None) -> str:
    """A postgres:// URL for a Django DATABASES entry, optionally aimed at another address."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = host or settings_dict.get("HOST") or LOCALHOST
    port = port or settings_dict.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"


def base_env(**overrides: str) -> dict[str, str]:
    """An environment built from scratch: no developer .env, no variables leaking in."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(
        {
            "DJANGO_ENV_FILE": "",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.update(overrides)
    return env


def local_production_env(**changes: str | None) -> dict[str, str]:
    """A valid production configuration for a server on 127.0.0.1 over plain HTTP.

    A change of None removes that variable (to test what its absence does).
    """
    env = base_env(
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(45),  # 60 random characters
        ALLOWED_HOSTS="localhost,127.0.0.1",
        CORS_ALLOWED_ORIGINS="https://app.example.com",
        SECURE_SSL_REDIRECT="false",
    )
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


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
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        else:
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

    `env` is the whole environment (see `base_env`); PORT, GUNICORN_WORKERS (unless `workers`
    is None: gunicorn_conf.py's default) and PROMETHEUS_MULTIPROC_DIR are filled in here.
    `code_dir` holds the code served and its gunicorn_conf.py (another release's, for the
    rollback test). The caller stops the server.
    """
    port = free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    prometheus_dir = work_dir / f"prometheus-{port}"
    stdout_path = work_dir / f"gunicorn-{port}.out"
    stderr_path = work_dir / f"gunicorn-{port}.err"
    stdout_file = stdout_path.open("wb")
    stderr_file = stderr_path.open("wb")
    full_env = {
        **env,
        "PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir),
    }
    if workers is not None:
        full_env["GUNICORN_WORKERS"] = str(workers)
    process = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "-c", "gunicorn_conf.py", app],
        cwd=code_dir,
        env=full_env,
        stdout=stdout_file,
        stderr=stderr_file,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so its workers can be killed with it
    )
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


class RedisServer:
    """A throwaway redis-server on a free port, without persistence; restartable on that port."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.work_dir = work_dir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                LOCALHOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.work_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection((LOCALHOST, self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        """Dies at once, as a crashed Redis would (SIGKILL, connections reset)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class SilentListener:
    """A TCP port that accepts connections and never says a word: a hung dependency.

    Connections are held open until `close`, so a client waits for its own read timeout.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOCALHOST, 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept_forever, daemon=True)
        self._thread.start()

    def _accept_forever(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=2)
        for connection in self.accepted:
            connection.close()
        self._sock.close()


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
