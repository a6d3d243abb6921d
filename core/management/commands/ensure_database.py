"""Creates the configured database and its PostGIS extension if they are missing.

Run by `make run` and `make test` before migrating. On a fresh Debian machine, as root, it
falls back to the `postgres` system account (peer authentication) to create the role and
the database; in production the platform provides both and this command is not used.
"""

import shutil
import subprocess

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from psycopg import sql

PSQL_AS_POSTGRES = ["runuser", "-u", "postgres", "--", "psql", "-XtAq"]
START_HINT = """\
PostgreSQL is not reachable at {host}:{port} ({error}).
Start it, then run this again:
  Debian/Ubuntu:   pg_ctlcluster <version> main start     (or: systemctl start postgresql)
  Not installed:   apt-get install postgresql postgresql-15-postgis-3
  With Docker:     docker run -d -p 5432:5432 -e POSTGRES_PASSWORD=delivery postgis/postgis
Or point DATABASE_URL in .env at a PostgreSQL server with PostGIS."""


class Command(BaseCommand):
    help = "Create the database, its role (local development) and the postgis extension."
    requires_system_checks: list = []  # runs before the database exists

    def handle(self, *args, **options):
        db = settings.DATABASES["default"]
        params = {
            "host": db["HOST"] or "127.0.0.1",
            "port": db["PORT"] or 5432,
            "user": db["USER"],
            "password": db["PASSWORD"] or None,
            "connect_timeout": 5,
        }
        name = db["NAME"]
        try:
            self._ensure_extension(psycopg.connect(dbname=name, **params))
            return
        except psycopg.OperationalError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
            if "does not exist" not in reason and "authentication failed" not in reason:
                raise CommandError(START_HINT.format(error=reason, **params)) from None
        if settings.IS_PRODUCTION:
            raise CommandError(f"Database {name!r} is missing; production must provide it.")
        self.stdout.write(f"Creating role {params['user']!r} and database {name!r} ...")
        self._create_as_postgres(db)
        self._ensure_extension(psycopg.connect(dbname=name, **params))

    def _ensure_extension(self, connection):
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")
            if cursor.fetchone() is None:
                self.stdout.write("Creating the postgis extension ...")
                cursor.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        self.stdout.write(self.style.SUCCESS("Database ready."))

    def _create_as_postgres(self, db):
        """Local development only: a superuser role, so tests can create their database."""
        if shutil.which("runuser") is None or shutil.which("psql") is None:
            raise CommandError("Cannot create the database: run as root with psql installed.")
        user, password, name = db["USER"], db["PASSWORD"], db["NAME"]
        self._port = str(db["PORT"] or 5432)
        self._psql_as_postgres(
            sql.SQL(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN "
                "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD {password}; END IF; END $$"
            )
            .format(
                name=sql.Literal(user), role=sql.Identifier(user), password=sql.Literal(password)
            )
            .as_string(None)
        )
        exists = self._psql_as_postgres(
            sql.SQL("SELECT 1 FROM pg_database WHERE datname = {}")
            .format(sql.Literal(name))
            .as_string(None)
        )
        if not exists.strip():
            self._psql_as_postgres(
                sql.SQL("CREATE DATABASE {} OWNER {}")
                .format(sql.Identifier(name), sql.Identifier(user))
                .as_string(None)
            )

    def _psql_as_postgres(self, statement: str) -> str:
        result = subprocess.run(  # noqa: S603 - fixed command, statements built with sql.Literal
            [*PSQL_AS_POSTGRES, "-p", self._port, "-v", "ON_ERROR_STOP=1", "-c", statement],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise CommandError(f"psql as postgres failed: {result.stderr.strip()}")
        return result.stdout
