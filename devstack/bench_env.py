"""Starts what a benchmark run stands on: its own database, migrated (a `<name>_bench`
database next to the developer's one, or run.py's --database-url; created with PostGIS by
`manage.py ensure_database`, emptied before each run by the benchmark itself), a throwaway
redis-server (devstack.redis), and Django in the benchmark's own process; and the environment
its web servers (devstack.web.start_web) and Celery processes get.

Nothing here touches the developer's database (`delivery`) or the machine's shared Redis.
"""

import contextlib
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devstack.commands import run_manage
from devstack.env import PROJECT_DIR, base_env, local_production_env
from devstack.redis import RedisServer

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
    env_file = PROJECT_DIR / ".env"
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
    """manage.py `args` under the tools' environment, without a time limit; ends the run if it
    fails."""
    result = run_manage(*args, env=env.tool_env(), timeout=None)
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
