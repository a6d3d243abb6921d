"""The processes `make bench` runs on loopback: its own Redis, its own database, the servers.

Nothing here touches the developer's database (`delivery`) or the machine's shared Redis: the
benchmark gets a `<name>_bench` database next to the developer's one (or run.py's
--database-url; created with PostGIS by `manage.py ensure_database`, migrated, emptied before
each run) and a throwaway redis-server on a free port (core.tests.servers.RedisServer).
"""

import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from devstack.env import base_env, local_production_env
from devstack.ports import LOCALHOST, free_port
from devstack.redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
DEFAULT_DATABASE_URL = "postgis://delivery:delivery@127.0.0.1:5432/delivery"
BENCH_SUFFIX = "_bench"
# Workers are never recycled during a run: GUNICORN_MAX_REQUESTS (1000 in production) would
# restart each worker every second or two at these rates, dropping its sockets, and the memory
# figure would describe a fresh worker instead of one that served the whole run.
NO_RECYCLING = {"GUNICORN_MAX_REQUESTS": "1000000000", "GUNICORN_MAX_REQUESTS_JITTER": "1"}


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def developer_database_url() -> str:
    """DATABASE_URL from the environment, else from .env, else the development default."""
    url = os.environ.get("DATABASE_URL", "").strip()
    env_file = ROOT / ".env"
    if not url and env_file.is_file():
        for line in env_file.read_text().splitlines():
            name, _, value = line.strip().partition("=")
            if name.strip() == "DATABASE_URL" and value.strip():
                url = value.strip().strip("'\"")
    return url or DEFAULT_DATABASE_URL


def bench_database_url(url: str = "") -> str:
    """`url` (run.py --database-url), or the developer's server with the database `<name>_bench`."""
    developer = developer_database_url()
    if not url:
        parts = urlsplit(developer)
        url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + BENCH_SUFFIX))
    if urlsplit(url).path.strip("/") == urlsplit(developer).path.strip("/"):
        raise SystemExit(
            "bench: the benchmark database must not be the developer's database; "
            "pass --database-url with a throwaway one."
        )
    return url


def database_name(url: str) -> str:
    return urlsplit(url).path.strip("/")


@dataclass
class Environment:
    """What every process of one benchmark run shares."""

    database_url: str
    redis_url: str
    secret_key: str

    def server_env(self, **changes: str) -> dict[str, str]:
        """The production configuration of a web server on 127.0.0.1 (DEBUG off)."""
        settings = {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_SECRET_KEY": self.secret_key,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SMS_PROVIDER": "dummy",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            # The ping rows drive 16 riders as fast as the server answers (~50 fixes a second
            # each), which the one-fix-a-second rule would refuse. 0 keeps the rule's index
            # probe in every ping (so its cost is measured) but refuses nothing.
            "RIDER_MIN_FIX_SECONDS": "0",
            # Likewise the booking row's 16 customers book as fast as the server answers: the
            # per-customer limits are off (their checks still run), and so is the shortest trip
            # (its drops are random, some next to the pickup).
            "ORDER_MAX_LIVE_PER_CUSTOMER": "1000000",
            "THROTTLE_QUOTE_CUSTOMER": "1000000/min",
            "THROTTLE_ORDER_CUSTOMER": "1000000/min",
            "ORDER_MIN_DISTANCE_M": "0",
            **NO_RECYCLING,
        }
        return local_production_env(**{**settings, **changes})

    def tool_env(self) -> dict[str, str]:
        """For manage.py commands and this process's own Django: development mode, no .env."""
        return base_env(
            DJANGO_SETTINGS_MODULE="bench.settings",
            DJANGO_ENV="development",
            DEBUG="false",
            DJANGO_SECRET_KEY=self.secret_key,
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            LOG_LEVEL="WARNING",
        )


def new_environment(redis_url: str, database_url: str = "") -> Environment:
    return Environment(bench_database_url(database_url), redis_url, secrets.token_urlsafe(45))


def manage(env: Environment, *args: str) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env.tool_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        raise SystemExit(f"bench: manage.py {' '.join(args)} failed:\n{output}")


def prepare_database(env: Environment) -> None:
    """Creates the benchmark database with PostGIS if missing, and migrates it."""
    say(f"database {database_name(env.database_url)}: ensure_database, migrate")
    manage(env, "ensure_database")
    manage(env, "migrate", "--noinput", "-v", "0")


@contextlib.contextmanager
def throwaway_stack(name: str):
    """A work directory, a redis-server of its own, the benchmark database migrated and no
    longer used by an earlier run, and this process's Django on them: yields (work_dir, env).
    The Redis is killed afterwards."""
    work_dir = Path(tempfile.mkdtemp(prefix=f"delivery-{name}-"))
    redis = RedisServer(work_dir / "redis")
    redis.start()
    try:
        env = new_environment(redis.url, "")
        prepare_database(env)
        wait_until_database_unused(env)
        setup_django(env)
        yield work_dir, env
    finally:
        redis.kill()


def setup_django(env: Environment) -> None:
    """Configures Django in this process against the benchmark database (seeding, KNN, JWTs)."""
    os.environ.update(env.tool_env())
    import django

    django.setup()


@dataclass
class WebServer:
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
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


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
    full_env = {
        **env,
        "PORT": str(port),
        "GUNICORN_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(work_dir / f"prometheus-{port}"),
    }
    command = [str(VENV_BIN / "gunicorn"), "-c", "gunicorn_conf.py"]
    if sync_wsgi:
        command += ["--worker-class", "sync", "config.wsgi:application"]
    else:
        command += ["config.asgi:application"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
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


def rss_mib(pid: int) -> float:
    """Resident set size (VmRSS) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mib(pid: int) -> float:
    """Proportional set size: pages shared with the master and the other workers split."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def profile(
    pids: list[int], seconds: float, out_dir: Path, name: str, *, waits: bool = False
) -> list[subprocess.Popen]:
    """Starts py-spy on each process for `seconds`: collapsed stacks of the GIL holder, or
    (`waits`) of every thread, waiting ones included (where a request spends its time)."""
    processes = []
    for pid in pids:
        output = out_dir / f"profile-{name}-{pid}.txt"
        command = [str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--rate", "250"]
        command += ["--duration", str(math.ceil(seconds)), "--format", "raw"]
        command += ["--idle"] if waits else ["--gil"]
        command += ["--output", str(output)]
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    return processes


def profile_summary(out_dir: Path, name: str, top: int = 30, *, within: str = "") -> str:
    """The functions most often on the stack (inclusive) and on top of it (self), in percent of
    the samples, from the collapsed stacks `profile(..., out_dir, name)` wrote; with `within`,
    of the stacks that pass through a frame naming it (one view, say) alone."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for path in sorted(out_dir.glob(f"profile-{name}-*.txt")):
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit() or within not in stack:
                continue
            samples = int(count)
            total += samples
            frames = [_short(frame) for frame in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + samples
            own[frames[-1]] = own.get(frames[-1], 0) + samples
    if not total:
        return "no samples"
    lines = [f"{total} samples; inclusive %:"]
    for frame, count in sorted(inclusive.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {100 * count / total:5.1f}  {frame}")
    lines.append("self %:")
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {100 * count / total:5.1f}  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """'function (/long/path/site-packages/pkg/mod.py:12)' -> 'function (pkg/mod.py)'."""
    function, _, location = frame.partition(" (")
    location = location.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in location:
            location = location.split(marker, 1)[1]
    return f"{function} ({location})"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_pids(database: str) -> list[int]:
    """The PostgreSQL backends serving `database` (their process titles name it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and f" {database} " in title:
            pids.append(int(entry.name))
    return pids


def machine_busy_and_total() -> tuple[int, int]:
    """The machine's busy and total CPU ticks so far, all cores (/proc/stat's first line)."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    total = sum(ticks[:8])  # guest time is already counted in user
    return total - idle, total


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop(), and how busy the
    whole machine was meanwhile (`machine_busy`, 0-1 of all its cores)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before: dict[str, dict[int, float]] = {}
        self.used: dict[str, dict[int, float]] = {}
        self.machine_before = (0, 0)
        self.machine_busy = math.nan

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()
        }

    def start(self) -> None:
        self.before = self._sample()
        self.machine_before = machine_busy_and_total()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        busy, total = machine_busy_and_total()
        spent = total - self.machine_before[1]
        self.machine_busy = (busy - self.machine_before[0]) / spent if spent else math.nan
        self.used = {}
        for name, pids in after.items():
            before = self.before.get(name, {})
            self.used[name] = {pid: used - before.get(pid, 0.0) for pid, used in pids.items()}
        return {name: sum(pids.values()) for name, pids in self.used.items()}

    def split(self, name: str) -> str:
        """How the CPU of group `name` was shared among its processes, in %, largest first.

        Long-lived connections stay on the worker that accepted them, and one worker can
        accept a whole burst of them: a round whose web split is far from even measured one
        busy worker and one idle one."""
        used = sorted(self.used[name].values(), reverse=True)
        total = sum(used) or 1.0
        return "/".join(f"{100 * value / total:.0f}" for value in used)


GC_GENERATIONS = ("young", "middle", "old")


def gc_pauses(metrics: str) -> dict[tuple[str, float], float]:
    """The web workers' garbage collections in a /metrics answer, all workers added up:
    {(generation, bucket's upper bound in seconds): collections at most that long}."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[tuple[str, float], float] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name == "python_gc_pause_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    key = (sample.labels["generation"], float(sample.labels["le"]))
                    counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def gc_generations(before: dict, after: dict, over_seconds: float) -> dict[str, tuple]:
    """The collections between two gc_pauses() readings, per generation: (how many, how many
    took longer than `over_seconds`, the bound of the bucket the longest fell in; 0 for none)."""
    done = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    found = {}
    for number, name in enumerate(GC_GENERATIONS):
        buckets = sorted((le, n) for (gen, le), n in done.items() if gen == str(number))
        total = buckets[-1][1] if buckets else 0.0
        over = total - next((n for le, n in buckets if le >= over_seconds), total)
        # the smallest bound that holds every collection of the generation
        longest = next((le for le, n in buckets if n == total), 0.0) if total else 0.0
        found[name] = (total, over, longest)
    return found


def _at_most(seconds: float) -> str:
    return "over 1 s" if math.isinf(seconds) else f"at most {seconds * 1000:g} ms"


def gc_pauses_summary(before: dict, after: dict, over_seconds: float = 0.05) -> str:
    """How many collections of each generation, how many took longer than `over_seconds`,
    and the bucket the longest fell in."""
    generations = gc_generations(before, after, over_seconds)
    parts = ", ".join(f"{name} {total:.0f}" for name, (total, _, _) in generations.items())
    over = sum(over for _, over, _ in generations.values())
    longest = max(longest for _, _, longest in generations.values())
    if not longest:
        return f"{parts}: none"
    return (
        f"{parts}; {over:.0f} longer than {over_seconds * 1000:g} ms; the longest "
        f"{_at_most(longest)}"
    )


def gc_generations_summary(counts: dict, over_seconds: float = 0.025) -> str:
    """gc_pauses_summary's figures for each generation apart, from one reading."""
    return ", ".join(
        f"{name} {total:.0f}"
        + (
            f" ({over:.0f} over {over_seconds * 1000:g} ms, the longest {_at_most(longest)})"
            if total
            else ""
        )
        for name, (total, over, longest) in gc_generations({}, counts, over_seconds).items()
    )


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


def established_connections(pid: int) -> int:
    """TCP connections in state ESTABLISHED that the process holds open (its clients', and its
    own to Redis and the database), from its file descriptors and /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                count += fields[3] == "01" and fields[9] in inodes  # 01: ESTABLISHED
    return count


def least_squares_two(rows: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """(b, c) of the least-squares fit y = a + b·x + c·z through (x, z, y) rows; None when x and
    z move together too closely to tell apart (a squared correlation above 0.95)."""
    n = len(rows)
    if n < 4:
        return None
    mx, mz, my = (sum(row[i] for row in rows) / n for i in range(3))
    sxx = sum((x - mx) ** 2 for x, _, _ in rows)
    szz = sum((z - mz) ** 2 for _, z, _ in rows)
    sxz = sum((x - mx) * (z - mz) for x, z, _ in rows)
    sxy = sum((x - mx) * (y - my) for x, _, y in rows)
    szy = sum((z - mz) * (y - my) for _, z, y in rows)
    if not sxx or not szz or sxz * sxz / (sxx * szz) > 0.95:
        return None
    determinant = sxx * szz - sxz * sxz
    return (sxy * szz - szy * sxz) / determinant, (szy * sxx - sxy * sxz) / determinant


def least_squares_slope(points: list[tuple[float, float]]) -> float:
    """The slope of the least-squares line through (x, y) points; NaN for fewer than two xs."""
    if len({x for x, _ in points}) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
    variance = sum((x - mean_x) ** 2 for x, _ in points)
    return covariance / variance


def wait_until_database_unused(env: Environment, timeout: float = 900.0) -> None:
    """Waits while other sessions are connected to the benchmark database (another `make
    bench` or `make soak` would empty it under this run, and this run it under them); gives up
    after `timeout`. Asks over a connection of its own: call it before setup_django, whose
    connection pool would be counted."""
    import psycopg

    url = urlunsplit(urlsplit(env.database_url)._replace(scheme="postgresql"))
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(url, connect_timeout=10) as connection:
            others = connection.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        if not others:
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"bench: {database_name(env.database_url)} is still in use by {others} other "
                "session(s); pass --database-url with a throwaway database of your own"
            )
        say(
            f"{others} other session(s) on {database_name(env.database_url)}: another bench or "
            "soak run? waiting"
        )
        time.sleep(10)


RESULTS = ROOT / "bench" / "results.json"


def merge_results(key: str, value) -> None:
    """Writes `value` under `key` in bench/results.json, keeping the other keys ("bench" from
    `make bench`, "soak" from `make soak`); NaN is written as null."""
    existing = {}
    if RESULTS.is_file():
        with contextlib.suppress(ValueError):
            existing = json.loads(RESULTS.read_text())
    if not isinstance(existing, dict):
        existing = {}  # an older layout: `make bench`'s rows alone
    existing[key] = value
    RESULTS.write_text(json.dumps(existing, indent=2, ensure_ascii=False, default=_plain))


def _plain(value):
    return None if isinstance(value, float) and math.isnan(value) else str(value)
