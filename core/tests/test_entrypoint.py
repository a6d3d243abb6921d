"""entrypoint.sh run for real, as a non-root user, against local throwaway services.

There is no Docker engine here, so the image's start-up behaviour is proven by running its
entrypoint directly, as user `nobody` (what USER appuser is in the image):
- started while PostgreSQL and Redis are both down, it waits with exponential backoff, then
  proceeds when they appear: migrates, collects static files, and gunicorn answers /health/;
- a SIGTERM during a slow request lets the request finish (200) and the process exits 0 within
  30 s (the entrypoint has exec'd, so the signal reaches gunicorn itself);
- two primaries started together migrate once: the PostgreSQL advisory lock makes one wait;
- a migration that fails (no right to create the postgis extension) exits 1 and says why;
- RUN_GUNICORN=0 starts a Celery worker that runs a real task and stops on SIGTERM;
- bad settings are refused before anything starts, in red only when asked for;
- started as root, it hands the writable directories to the app user and drops to it.

The throwaway PostgreSQL (initdb into a temp dir, run as `nobody` on a free port) and Redis
listen on 127.0.0.1 only and are killed in finalizers; the machine's own servers are never
touched. This project's Python lives under /root, which `nobody` cannot enter: the tests link
the same interpreter (same version) into a readable directory and point a small virtualenv at
the project's installed packages (APP_VENV), as the image points PATH at /opt/venv.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from core.management.commands.migrate_locked import MIGRATION_LOCK_KEY
from devstack.env import PROJECT_DIR, local_production_env
from devstack.ports import LOCALHOST, free_port
from devstack.postgres import NOBODY_GID, NOBODY_UID, PgCluster, as_nobody
from devstack.redis import RedisServer
from devstack.wait import wait_for
from devstack.web import SlowRequest

pytestmark = pytest.mark.slow

ENTRYPOINT = PROJECT_DIR / "entrypoint.sh"
HEALTHCHECK = PROJECT_DIR / "deploy" / "docker" / "healthcheck.sh"


class Sandbox:
    """A directory tree `nobody` can read, with a Python it can run and dirs it owns."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="delivery-entrypoint-", dir="/tmp"))
        self.root.chmod(0o755)
        self.python_dir = self.root / "python"
        self.venv = self.root / "venv"
        self._link_python()

    def _link_python(self) -> None:
        base = Path(sys.base_prefix)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        (self.python_dir / "bin").mkdir(parents=True)
        (self.python_dir / "lib").mkdir()

        def link(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        link(str(Path(sys._base_executable).resolve()), str(self.python_dir / "bin" / version))
        libpython = base / "lib" / sysconfig.get_config_var("INSTSONAME")
        if libpython.exists():
            link(str(libpython), str(self.python_dir / "lib" / libpython.name))
        shutil.copytree(
            base / "lib" / version,
            self.python_dir / "lib" / version,
            copy_function=link,
            symlinks=True,
            ignore=shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter"),
        )
        (self.python_dir / "lib" / version / "site-packages").mkdir()
        subprocess.run(
            [str(self.python_dir / "bin" / version), "-m", "venv", "--without-pip", self.venv],
            env={**os.environ, "LD_LIBRARY_PATH": str(self.python_dir / "lib")},
            check=True,
            timeout=60,
        )
        packages = sysconfig.get_paths()["purelib"]  # this project's .venv
        (self.venv / "lib" / version / "site-packages" / "project.pth").write_text(
            f"import site; site.addsitedir({packages!r})\n"
        )
        subprocess.run(["chmod", "-R", "a+rX", str(self.root)], check=True)

    def owned_dir(self, name: str) -> Path:
        """A directory owned by `nobody` (its HOME, STATIC_ROOT, ...)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, NOBODY_UID, NOBODY_GID)
        return path

    def env(self, name: str, **changes: str | None) -> dict[str, str]:
        """A valid production environment for one entrypoint run, with directories of its own."""
        env = local_production_env(
            APP_VENV=str(self.venv),
            LD_LIBRARY_PATH=str(self.python_dir / "lib"),
            PATH=f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            HOME=str(self.owned_dir(f"{name}/home")),
            STATIC_ROOT=str(self.owned_dir(f"{name}/static")),
            MEDIA_ROOT=str(self.owned_dir(f"{name}/media")),
            PROMETHEUS_MULTIPROC_DIR=str(self.owned_dir(f"{name}/prometheus")),
            WORKER_LIVENESS_DIR=str(self.owned_dir(f"{name}/liveness")),
            PYTHONDONTWRITEBYTECODE="1",
            DJANGO_SETTINGS_MODULE="bench.settings",
            PORT=str(free_port()),
            GUNICORN_WORKERS="1",
            LOG_LEVEL="INFO",
            DB_POOL_MIN_SIZE="1",
            DB_WAIT_TIMEOUT="60",
            REDIS_WAIT_TIMEOUT="60",
            MIGRATION_WAIT_TIMEOUT="60",
        )
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Entrypoint:
    """One run of entrypoint.sh as `nobody`, output (stdout + stderr) in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str, as_root=False) -> None:
        self.env = env
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(ENTRYPOINT), *args],
            cwd="/",
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: the finalizer kills its children with it
            **({} if as_root else as_nobody()),
        )

    @property
    def port(self) -> int:
        return int(self.env["PORT"])

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.output()
            if needle in output:
                return output
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"{needle!r} never appeared (exit {self.process.poll()}):\n{self.tail()}"
        )

    def wait_for_health(self, timeout: float) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(f"http://{LOCALHOST}:{self.port}/health/", timeout=5)
                if response.status_code == 200:
                    return response
            time.sleep(0.2)
        raise AssertionError(f"/health/ never answered 200:\n{self.tail()}")

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s:\n{self.tail()}") from None

    def tail(self, chars: int = 4000) -> str:
        return self.output()[-chars:]

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.remove()


@pytest.fixture(scope="module")
def cluster(sandbox):
    """Initialised but NOT started: the first test starts it while an entrypoint waits."""
    pg = PgCluster(sandbox.owned_dir("pg"))
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def started(sandbox):
    """Entrypoints started by a test; every one is killed at the end of the module."""
    runs: list[Entrypoint] = []

    def start(env: dict[str, str], name: str, *args: str, as_root=False) -> Entrypoint:
        run = Entrypoint(env, sandbox.root / f"{name}.log", *args, as_root=as_root)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


@pytest.fixture(scope="module")
def web(sandbox, cluster, started):
    """A primary web instance started while PostgreSQL and Redis are down, then brought up."""
    redis_server = RedisServer(sandbox.owned_dir("redis"))
    env = sandbox.env(
        "web", IS_PRIMARY="1", DATABASE_URL=cluster.url("delivery"), REDIS_URL=redis_server.url
    )
    run = started(env, "web")
    facts = {}
    try:
        # Two failed attempts, 1 s then 2 s apart: the backoff is doubling.
        run.wait_for_log("waiting for PostgreSQL", timeout=30)
        run.wait_for_log("(attempt 2, retrying in 2s)", timeout=30)
        cluster.start()
        cluster.execute("CREATE DATABASE delivery")
        facts["postgres_started_at"] = time.monotonic()
        run.wait_for_log("waiting for Redis", timeout=30)
        redis_server.start()
        facts["redis_port"] = redis_server.port
        facts["health"] = run.wait_for_health(timeout=90)
        yield run, facts
    finally:
        run.close()
        redis_server.kill()


@pytest.mark.checklist(
    "P1.18",
    "P1.19",
    "P1.20",
    "P1.21",
    "P1.23",
    "P2.13",
    "P2.14",
    "P2.15",
    "P2.18",
    "P2.19",
    "P2.20",
    "P4.1",
    "P4.6",
    "P4.7",
    "P4.13",
    "P6.13",
    "P8.15",
    "P11.8",
    "P11.9",
    "P11.10",
    "P11.16",
    "P7.10",
    "P12.16",
    "P12.17",
)
def test_waits_for_postgresql_and_redis_then_migrates_and_serves(web, cluster):
    run, facts = web
    output = run.output()
    lines = output.splitlines()
    waits = [line for line in lines if "waiting for PostgreSQL" in line]
    assert "(attempt 1, retrying in 1s)" in waits[0]
    assert "(attempt 2, retrying in 2s)" in waits[1]
    # Plain text: stdout is a file here, as it is under a log collector.
    assert "\x1b[" not in "\n".join(line for line in lines if "[entrypoint]" in line)

    def position(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    order = [
        "settings valid (DJANGO_ENV=production)",
        "waiting for PostgreSQL",
        f"PostgreSQL at 127.0.0.1:{cluster.port}/delivery is up",
        "waiting for Redis",
        f"Redis at redis://127.0.0.1:{facts['redis_port']}/0 is up",
        "[migrate_locked] applying",
        "collecting static files",
        "starting gunicorn",
    ]
    positions = [position(text) for text in order]
    assert positions == sorted(positions), output

    assert facts["health"].json()["checks"]["database"] == "ok"
    assert facts["health"].json()["checks"]["cache"] == "ok"
    # Migrated: nothing pending in the new database.
    applied = cluster.execute("SELECT count(*) FROM django_migrations", "delivery")[0][0]
    assert applied > 30
    assert cluster.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'", "delivery")
    static_root = Path(run.env["STATIC_ROOT"])
    assert (static_root / "admin" / "css" / "base.css").is_file()
    assert static_root.stat().st_uid == NOBODY_UID

    # exec: the entrypoint's own process IS the gunicorn master, running as nobody.
    status = Path(f"/proc/{run.process.pid}/status").read_text()
    assert f"Uid:\t{NOBODY_UID}\t" in status
    assert b"gunicorn" in Path(f"/proc/{run.process.pid}/cmdline").read_bytes()

    # The image's HEALTHCHECK script: the port answers and /health/ answers.
    check_env = {**run.env, "PROCESS_ROLE": "web"}
    healthy = subprocess.run(
        [str(HEALTHCHECK)], env=check_env, capture_output=True, text=True, timeout=30
    )
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "/health/: 200" in healthy.stdout
    dead = subprocess.run(
        [str(HEALTHCHECK)],
        env={**check_env, "PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert dead.returncode == 1 and "nothing listens" in dead.stdout


@pytest.mark.checklist("P2.20", "P2.21", "P8.7")
def test_sigterm_during_a_slow_request_lets_it_finish_and_exits_0(web):
    run, _ = web
    request = SlowRequest(run.port)
    run.wait_for_log("slow view: sleeping 4.0 s", timeout=15)
    signalled = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    code = run.wait(timeout=35)
    stopped_after = time.monotonic() - signalled
    response = request.finish(timeout=10)

    assert response.status_code == 200
    assert response.json() == {"ok": True, "slept": 4.0}
    assert code == 0, run.tail()
    assert 3 <= stopped_after < 30, stopped_after  # waited for the request, not for a timeout
    assert "Handling signal: term" in run.output()


@pytest.mark.checklist("P1.19", "P4.6", "P4.10", "P4.13")
def test_two_primaries_started_together_migrate_once(sandbox, cluster, web, started):
    cluster.execute("CREATE DATABASE race")
    redis_url = settings.REDIS_URL
    # Hold the lock first so that both are provably waiting on it, then let them race for it.
    holder = cluster.connect("race")
    holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
    runs = [
        started(
            sandbox.env(
                f"primary{i}", IS_PRIMARY="1", DATABASE_URL=cluster.url("race"), REDIS_URL=redis_url
            ),
            f"primary{i}",
        )
        for i in (1, 2)
    ]
    try:
        for run in runs:
            run.wait_for_log("waiting for the migration lock", timeout=60)
    finally:
        holder.close()
    for run in runs:
        run.wait_for_health(timeout=90)

    outputs = [run.output() for run in runs]
    appliers = [output for output in outputs if "[migrate_locked] applying" in output]
    assert len(appliers) == 1, "\n\n".join(outputs)
    other = next(output for output in outputs if output is not appliers[0])
    assert "holding the migration lock (after waiting)" in other
    assert "schema is current: nothing to migrate" in other
    duplicates = cluster.execute(
        "SELECT app, name FROM django_migrations GROUP BY 1, 2 HAVING count(*) > 1", "race"
    )
    assert duplicates == []
    race = cluster.execute("SELECT count(*) FROM django_migrations", "race")[0][0]
    reference = cluster.execute("SELECT count(*) FROM django_migrations", "delivery")[0][0]
    assert race == reference
    for run in runs:
        run.process.send_signal(signal.SIGTERM)
        assert run.wait(timeout=35) == 0


@pytest.mark.checklist("P4.8", "P4.9", "P12.16")
def test_a_failing_migration_exits_1_and_says_why(sandbox, cluster, web, started):
    # A role that may not create the postgis extension (superusers only), on a database
    # without it: the first migration step fails, as on a managed server missing PostGIS.
    cluster.execute("CREATE ROLE limited LOGIN NOSUPERUSER")
    cluster.execute("CREATE DATABASE nogis OWNER limited")
    env = sandbox.env(
        "failing",
        IS_PRIMARY="1",
        DATABASE_URL=cluster.url("nogis", user="limited"),
        REDIS_URL=settings.REDIS_URL,
    )
    run = started(env, "failing")
    assert run.wait(timeout=90) == 1, run.tail()
    output = run.output()
    assert "permission denied to create extension" in output, output
    assert "migrations failed (see above); not starting" in output
    assert "starting gunicorn" not in output


@pytest.mark.checklist("P2.22", "P4.9", "P5.12", "P5.16", "P5.17", "P7.10", "P11.13", "P12.20")
def test_run_gunicorn_0_starts_a_worker_that_runs_a_task(sandbox, cluster, web, started):
    from django.core.cache import cache

    from config.celery import app
    from core.health import BEAT_HEARTBEAT_KEY

    env = sandbox.env(
        "worker",
        RUN_GUNICORN="0",
        CELERY_CONCURRENCY="1",
        DATABASE_URL=cluster.url("delivery"),
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    run = started(env, "worker")
    run.wait_for_log(" ready.", timeout=90)
    output = run.output()
    assert "starting a Celery worker on queues high,default,low" in output
    assert "schema is current" in output  # a non-primary waits for the migrations
    environ = Path(f"/proc/{run.process.pid}/environ").read_bytes().split(b"\0")
    assert b"REMAP_SIGTERM=SIGQUIT" in environ
    assert b"celery" in Path(f"/proc/{run.process.pid}/cmdline").read_bytes()

    cache.delete(BEAT_HEARTBEAT_KEY)
    sent_at = time.time()
    app.send_task("core.tasks.beat_heartbeat")
    deadline = time.monotonic() + 30
    while cache.get(BEAT_HEARTBEAT_KEY) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    beat = cache.get(BEAT_HEARTBEAT_KEY)
    assert beat is not None and float(beat) >= sent_at, run.tail()
    run.wait_for_log("Task core.tasks.beat_heartbeat[", timeout=10)

    # The image's HEALTHCHECK for a worker: it is consuming (its canary task ran); a worker of
    # another name has no state to show
    def worker_check(**changes: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(HEALTHCHECK)],
            env={**run.env, "PROCESS_ROLE": "worker", **changes},
            capture_output=True,
            text=True,
            timeout=30,
        )

    healthy = wait_for(lambda: (check := worker_check()).returncode == 0 and check, 30, "probe")
    assert f"worker@{socket.gethostname()}: consuming" in healthy.stdout, healthy
    absent = worker_check(CELERY_WORKER_NAME="absent")
    assert absent.returncode == 1 and "no state" in absent.stdout, absent

    signalled = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    code = run.wait(timeout=35)
    assert time.monotonic() - signalled < 30
    assert code == 0, run.tail()


@pytest.mark.checklist("P1.5", "P2.12", "P2.16", "P6.22")
@pytest.mark.parametrize(
    ("changes", "args", "message"),
    [
        ({"PORT": "50x0"}, (), "PORT must be a port number (1-65535), not '50x0'"),
        pytest.param(
            {"RUN_GUNICORN": "2"},
            (),
            "RUN_GUNICORN must be 1 (web) or 0 (Celery worker)",
            marks=pytest.mark.checklist("P7.10", configured=True),
        ),
        pytest.param(
            {"IS_PRIMARY": "0"},
            ("beat",),
            "celery beat runs on the primary only",
            marks=pytest.mark.checklist("P5.18"),
        ),
        ({"CELERY_QUEUES": "high;low"}, ("worker",), "CELERY_QUEUES must be queue names"),
        (
            {"DJANGO_SECRET_KEY": None, "ALLOWED_HOSTS": "*"},
            (),
            "Refusing to start (DJANGO_ENV=production)",
        ),
    ],
)
def test_bad_settings_are_refused_before_anything_starts(sandbox, changes, args, message):
    # Nothing listens on these: a run that got past validation would wait, not exit at once.
    env = sandbox.env(
        "refused",
        DATABASE_URL=f"postgis://postgres@{LOCALHOST}:{free_port()}/none",
        REDIS_URL=f"redis://{LOCALHOST}:{free_port()}/0",
        **changes,
    )
    result = subprocess.run(
        [str(ENTRYPOINT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        **as_nobody(),
    )
    assert result.returncode == 1
    assert message in result.stderr, result.stdout + result.stderr
    assert "\x1b[" not in result.stderr
    assert "waiting for" not in result.stdout
    if "DJANGO_SECRET_KEY" in changes:
        assert "DJANGO_SECRET_KEY is not set." in result.stderr
        assert "ALLOWED_HOSTS must not contain '*'" in result.stderr
        coloured = subprocess.run(
            [str(ENTRYPOINT)],
            env={**env, "FORCE_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=60,
            **as_nobody(),
        )
        assert coloured.returncode == 1
        assert "\x1b[1;31m" in coloured.stderr


@pytest.mark.checklist("P2.6", "P2.7", "P2.17", "P10.15", "P10.16")
def test_started_as_root_it_hands_the_directories_over_and_drops_to_the_app_user(sandbox):
    static_root = sandbox.root / "root-run" / "static"  # missing, under a root-owned directory
    media_root = sandbox.root / "root-run" / "media"
    (sandbox.root / "root-run").mkdir()
    env = sandbox.env(
        "root", APP_USER="nobody", STATIC_ROOT=str(static_root), MEDIA_ROOT=str(media_root)
    )
    result = subprocess.run(
        [str(ENTRYPOINT), "id", "-u"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(NOBODY_UID)
    assert "continuing as nobody" in result.stdout
    for path in (static_root, media_root):
        assert path.stat().st_uid == NOBODY_UID

    missing_user = subprocess.run(
        [str(ENTRYPOINT), "id", "-u"],
        env={**env, "APP_USER": "no-such-user-here"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing_user.returncode == 1
    assert "refusing to run the service as root" in missing_user.stderr


@pytest.mark.checklist("P1.19", "P2.18", "P2.19", "P4.6", "P4.9")
def test_a_non_primary_never_migrates_nor_collects_static_and_waits_for_the_schema(
    sandbox, cluster, web, started
):
    # given an empty database and a web instance that is not the primary
    cluster.execute("CREATE DATABASE unmigrated")
    env = sandbox.env(
        "replica",
        IS_PRIMARY="0",
        DATABASE_URL=cluster.url("unmigrated"),
        REDIS_URL=settings.REDIS_URL,
        MIGRATION_WAIT_TIMEOUT="4",
    )

    # when it starts and nobody migrates
    run = started(env, "replica")
    code = run.wait(timeout=60)

    # then it waited for the schema, then refused to start; it never migrated or collected
    output = run.output()
    assert code == 1, output
    assert "waiting for the primary to migrate" in output
    assert "the schema is not current; not starting" in output
    for never in ("[migrate_locked] applying", "collecting static files", "starting gunicorn"):
        assert never not in output, output
    assert cluster.execute("SELECT to_regclass('django_migrations')", "unmigrated") == [(None,)]
    assert list(Path(env["STATIC_ROOT"]).iterdir()) == []


@pytest.mark.checklist("P1.21", "P2.13", "P2.14", "P2.16")
@pytest.mark.parametrize("dependency", ["PostgreSQL", "Redis"])
def test_an_unreachable_dependency_stops_the_start_after_its_wait(
    sandbox, cluster, web, dependency
):
    # given one dependency nobody listens for, and a 3 s wait for it
    dead = f"{LOCALHOST}:{free_port()}"
    env = sandbox.env(
        "unreachable",
        DATABASE_URL=(
            f"postgis://postgres@{dead}/none"
            if dependency == "PostgreSQL"
            else cluster.url("delivery")
        ),
        REDIS_URL=f"redis://{dead}/0" if dependency == "Redis" else settings.REDIS_URL,
        DB_WAIT_TIMEOUT="3",
        REDIS_WAIT_TIMEOUT="3",
    )

    # when
    started_at = time.monotonic()
    result = subprocess.run(
        [str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=60, **as_nobody()
    )

    # then it retried for 3 s, gave up with exit 1 and why, and started nothing
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started_at < 30
    assert f"waiting for {dependency} at" in result.stdout
    assert f"{dead}" in result.stderr and "still unreachable after 3s" in result.stderr
    assert "starting gunicorn" not in result.stdout + result.stderr
