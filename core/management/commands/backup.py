"""`manage.py backup`: a pg_dump of the configured database to a directory or an S3 bucket.

Run on a schedule by the Kubernetes CronJob, the ECS scheduled task and the Railway cron
service (deploy/), and by hand; docs/deploy.md#backups says how to restore one.

- One `pg_dump --format=custom`: a single transaction's snapshot, so the dump is consistent
  while the service keeps writing. The password reaches pg_dump in its environment
  (PGPASSWORD), never on a command line or in what this prints.
- The dump is written beside the target first and checked (`pg_restore --list` reads it back)
  before it takes its final name `<database>-<UTC time>.dump`: an interrupted run never leaves
  a file that looks like a backup.
- Then the oldest dumps of the same database at the target are removed, past
  BACKUP_KEEP_COUNT (the newest N stay) or BACKUP_KEEP_DAYS; other files are never touched.

Any failure (database unreachable, pg_dump missing or refusing, a target that cannot be
written) exits 1 with the reason, and nothing is pruned.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# libpq reads these from the environment; Django's OPTIONS keys on the left.
_LIBPQ_OPTIONS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}


@dataclass(frozen=True)
class Dump:
    name: str
    taken_at: datetime


def dumps_named(names: list[str], database: str) -> list[Dump]:
    """The dumps of `database` among `names`, newest first; anything else is left out."""
    pattern = re.compile(rf"{re.escape(database)}-(\d{{8}}T\d{{6}}Z)\.dump")
    found = []
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            taken_at = datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=UTC)
            found.append(Dump(name, taken_at))
    return sorted(found, key=lambda dump: dump.taken_at, reverse=True)


def dumps_to_prune(
    dumps: list[Dump], *, keep_count: int, keep_days: int, now: datetime, newest: str
) -> list[Dump]:
    """Past the newest `keep_count` or older than `keep_days` (0: no such limit); never the
    dump just written."""
    doomed = []
    for index, dump in enumerate(dumps):
        too_many = keep_count > 0 and index >= keep_count
        too_old = keep_days > 0 and now - dump.taken_at > timedelta(days=keep_days)
        if (too_many or too_old) and dump.name != newest:
            doomed.append(dump)
    return doomed


class DirectoryTarget:
    def __init__(self, path: str) -> None:
        self.directory = Path(path)
        self.shown = str(self.directory)

    def check(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CommandError(f"cannot create the directory {self.shown}: {error}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise CommandError(f"the directory {self.shown} is not writable by this user")

    def scratch_dir(self) -> Path:
        # Beside the final file, so the rename that publishes it is atomic.
        return self.directory

    def put(self, dump_file: Path, name: str) -> str:
        final = self.directory / name
        os.replace(dump_file, final)
        return str(final)

    def names(self) -> list[str]:
        return [entry.name for entry in self.directory.iterdir() if entry.is_file()]

    def delete(self, name: str) -> None:
        (self.directory / name).unlink(missing_ok=True)


class S3Target:
    """s3://bucket/prefix/ on AWS, or on an S3-compatible server (BACKUP_S3_ENDPOINT_URL).
    Credentials come from boto3's usual chain: AWS_* variables, or the task's or pod's role."""

    def __init__(self, url: str, endpoint_url: str) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if not parts.netloc:
            raise CommandError(f"an S3 target needs a bucket: s3://bucket/prefix/ (got {url!r})")
        self.bucket = parts.netloc
        prefix = parts.path.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"
        self.shown = f"s3://{self.bucket}/{self.prefix}"
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10),
        )

    def _failed(self, doing: str, error: Exception) -> CommandError:
        return CommandError(f"{doing} {self.shown} failed: {type(error).__name__}: {error}")

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as error:
            raise self._failed("checking the bucket of", error) from None

    def scratch_dir(self) -> Path:
        return Path(tempfile.gettempdir())

    def put(self, dump_file: Path, name: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.prefix}{name}"
        try:
            self.client.upload_file(str(dump_file), self.bucket, key)
        except (BotoCoreError, ClientError) as error:
            raise self._failed("uploading to", error) from None
        finally:
            dump_file.unlink(missing_ok=True)
        return f"s3://{self.bucket}/{key}"

    def names(self) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        names = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
            )
            for page in pages:
                names += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as error:
            raise self._failed("listing", error) from None
        return names

    def delete(self, name: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=f"{self.prefix}{name}")
        except (BotoCoreError, ClientError) as error:
            raise self._failed("removing an old dump from", error) from None


def target_for(location: str) -> DirectoryTarget | S3Target:
    scheme = urlsplit(location).scheme
    if scheme == "s3":
        return S3Target(location, settings.BACKUP_S3_ENDPOINT_URL)
    if scheme:
        raise CommandError(f"a backup target is a directory or s3://bucket/prefix/, not {scheme}:")
    return DirectoryTarget(location)


def pg_environment(db: dict) -> dict[str, str]:
    """pg_dump's environment: the connection in libpq's variables, the password among them.
    Other PG* variables the process has (PGSSLROOTCERT, ...) stay, as the app's libpq sees them."""
    env = dict(os.environ)
    env |= {
        "PGHOST": str(db.get("HOST") or "127.0.0.1"),
        "PGPORT": str(db.get("PORT") or 5432),
        "PGDATABASE": db["NAME"],
        "PGAPPNAME": "delivery-backup",
    }
    if db.get("USER"):
        env["PGUSER"] = db["USER"]
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    options = db.get("OPTIONS", {})
    env |= {var: str(options[key]) for key, var in _LIBPQ_OPTIONS.items() if key in options}
    return env


class Command(BaseCommand):
    help = (
        "Dump the database (pg_dump --format=custom) to a directory or s3://bucket/prefix/ "
        "as <database>-<UTC time>.dump, then remove its oldest dumps there."
    )
    requires_system_checks: list = []  # a backup needs the database, not the app's checks

    def add_arguments(self, parser):
        parser.add_argument(
            "--to",
            default=None,
            help="A directory or s3://bucket/prefix/ (default: BACKUP_TARGET).",
        )
        parser.add_argument(
            "--keep",
            type=int,
            default=None,
            help="Dumps of this database kept at the target, newest first; 0: no count limit "
            "(default: BACKUP_KEEP_COUNT, 14).",
        )
        parser.add_argument(
            "--keep-days",
            type=int,
            default=None,
            help="Remove its dumps older than this many days; 0: no age limit "
            "(default: BACKUP_KEEP_DAYS, 0).",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def _say(self, message: str) -> None:
        self.stdout.write(f"[backup] {message}")

    def handle(self, *args, to, keep, keep_days, database, **options):
        location = to or settings.BACKUP_TARGET
        if not location:
            raise CommandError(
                "no backup target: pass --to DIR or --to s3://bucket/prefix/, or set BACKUP_TARGET"
            )
        keep = settings.BACKUP_KEEP_COUNT if keep is None else keep
        keep_days = settings.BACKUP_KEEP_DAYS if keep_days is None else keep_days
        if keep < 0 or keep_days < 0:
            raise CommandError("--keep and --keep-days must be 0 or more")
        db = settings.DATABASES[database]
        if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
            raise CommandError("pg_dump/pg_restore not found: install the PostgreSQL client")

        target = target_for(location)
        target.check()
        now = datetime.now(UTC)
        name = f"{db['NAME']}-{now.strftime(STAMP_FORMAT)}.dump"
        env = pg_environment(db)
        self._say(f"dumping {db['NAME']} at {env['PGHOST']}:{env['PGPORT']} to {target.shown}")
        started = time.monotonic()
        partial = Path(target.scratch_dir(), f".{name}.partial")
        try:
            self._dump(partial, env, db.get("PASSWORD") or "")
            size = partial.stat().st_size
            written = target.put(partial, name)
        finally:
            partial.unlink(missing_ok=True)
        self._say(f"wrote {written} ({size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s)")

        doomed = dumps_to_prune(
            dumps_named(target.names(), db["NAME"]),
            keep_count=keep,
            keep_days=keep_days,
            now=now,
            newest=name,
        )
        for dump in doomed:
            target.delete(dump.name)
        kept = f"the newest {keep}" if keep else "every"
        aged = f", none older than {keep_days} days" if keep_days else ""
        self._say(f"removed {len(doomed)} older dump(s); keeping {kept}{aged}")

    def _dump(self, path: Path, env: dict[str, str], password: str) -> None:
        def run(command: list[str], doing: str) -> str:
            result = subprocess.run(  # noqa: S603 - fixed programs, no shell
                command, env=env, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                reason = result.stderr.strip() or f"exit status {result.returncode}"
                if password:  # libpq never prints it; this makes sure of it
                    reason = reason.replace(password, "***")
                raise CommandError(f"{doing} failed: {reason}")
            return result.stdout

        run(["pg_dump", "--format=custom", "--no-password", f"--file={path}"], "pg_dump")
        listing = run(["pg_restore", "--list", str(path)], "reading the dump back")
        if " TABLE DATA " not in listing:
            raise CommandError("the dump holds no table data: is this the right database?")
