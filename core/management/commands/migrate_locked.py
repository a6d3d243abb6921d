"""Migrations that two instances can never run at once, and a wait for them.

`entrypoint.sh` runs `migrate_locked` on the primary (IS_PRIMARY=1) and in the one-shot
`migrate` role (Kubernetes Job, Railway pre-deploy, ECS one-off task), and
`migrate_locked --wait` everywhere else:

- the primary takes a PostgreSQL advisory lock on a connection of its own, migrates, and lets
  go; a second primary started at the same moment waits for the lock (bounded by --timeout),
  then finds nothing left to apply;
- the others poll until no migration is pending (bounded by --timeout), so no process ever
  runs new code against an old schema.

A failed migration exits 1 with the error; so does a timeout.
"""

import time

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

# pg_advisory_lock key shared by every instance of this service: "delivery-migrate" as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"dlv-migr", "big") & 0x7FFF_FFFF_FFFF_FFFF
# libpq/psycopg connection settings that can be copied from Django's OPTIONS.
_COPIED_OPTIONS = {"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "options"}


def pending_migrations(alias: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Migrations not yet applied to the database, as app.name strings (all when it is empty)."""
    connection = connections[alias]
    try:
        executor = MigrationExecutor(connection)
        targets = executor.loader.graph.leaf_nodes()
        plan = executor.migration_plan(targets)
        return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
    finally:
        connection.close()


def lock_connection(alias: str = DEFAULT_DB_ALIAS) -> psycopg.Connection:
    """A connection of its own for the advisory lock, never one Django may close or pool."""
    db = settings.DATABASES[alias]
    options = db.get("OPTIONS", {})
    params = {key: value for key, value in options.items() if key in _COPIED_OPTIONS}
    return psycopg.connect(
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        dbname=db.get("NAME"),
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        connect_timeout=options.get("connect_timeout", 5),
        autocommit=True,
        **params,
    )


class Command(BaseCommand):
    help = "Migrate under a PostgreSQL advisory lock, or (--wait) wait until nothing is pending."
    # Runs before the schema exists; `manage.py check` is entrypoint.sh's own step.
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Do not migrate: wait until another instance has applied every migration.",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=300.0,
            help="Seconds to wait for the lock (or, with --wait, for the schema). Default 300.",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args, wait, timeout, database, verbosity, **options):
        if timeout <= 0:
            raise CommandError("--timeout must be positive.")
        if wait:
            self._wait_for_schema(database, timeout)
        else:
            self._migrate_under_lock(database, timeout, verbosity)

    def _say(self, message: str) -> None:
        self.stdout.write(f"[migrate_locked] {message}")

    def _migrate_under_lock(self, database: str, timeout: float, verbosity: int) -> None:
        try:
            lock = lock_connection(database)
        except psycopg.Error as error:
            raise CommandError(f"cannot connect to take the migration lock: {error}") from None
        deadline = time.monotonic() + timeout
        try:
            waited = False
            while not lock.execute(
                "SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_KEY]
            ).fetchone()[0]:
                if not waited:
                    holder = lock.execute(
                        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND ((classid::bigint << 32) | objid::bigint) = %s",
                        [MIGRATION_LOCK_KEY],
                    ).fetchone()
                    self._say(
                        "waiting for the migration lock: another instance is migrating"
                        + (f" (PostgreSQL backend {holder[0]})" if holder else "")
                    )
                    waited = True
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"gave up after {timeout:g} s waiting for the migration lock; "
                        "is another instance stuck migrating?"
                    )
                time.sleep(0.5)
            self._say("holding the migration lock" + (" (after waiting)" if waited else ""))
            try:
                pending = pending_migrations(database)
            except Exception as error:
                raise CommandError(f"cannot read the migration state: {error}") from error
            if not pending:
                self._say("schema is current: nothing to migrate")
                return
            self._say(f"applying {len(pending)} migration(s)")
            try:
                call_command(
                    "migrate", database=database, interactive=False, verbosity=max(verbosity, 1)
                )
            except Exception as error:
                raise CommandError(
                    f"migrations failed: {type(error).__name__}: {error}".strip()
                ) from error
            self._say("migrations applied")
        finally:
            # Closing the session releases the lock too; unlocking first says so explicitly.
            try:
                if not lock.closed:
                    lock.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                pass
            lock.close()

    def _wait_for_schema(self, database: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 1.0
        while True:
            try:
                pending = pending_migrations(database)
                reason = f"{len(pending)} migration(s) pending" if pending else ""
            except Exception as error:  # no django_migrations table yet, connection lost, ...
                pending, reason = ["?"], f"{type(error).__name__}: {error}".splitlines()[0]
            if not pending:
                self._say("schema is current")
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandError(
                    f"schema still not current after {timeout:g} s ({reason}): is the primary "
                    "(IS_PRIMARY=1) or the migrate job running?"
                )
            self._say(f"waiting for the primary to migrate ({reason}); next look in {delay:g} s")
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 10.0)
