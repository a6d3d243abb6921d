"""Checks of PostgreSQL (phases 1, 4, 9, 11, 12)."""

import os
import re

from django.conf import settings

from readiness.masking import describe
from readiness.registry import Outcome, check, failed, judged, passed
from readiness.runner import Context


@check("P1.16", "P7.5", "P4.2")
def database_configured(context: Context) -> Outcome:
    database = settings.DATABASES["default"]
    source = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "POSTGRES_*"
    if source == "POSTGRES_*" and not os.environ.get("POSTGRES_DB"):
        return failed("neither DATABASE_URL nor POSTGRES_* is set (a development default?)")
    problems = []
    if not database.get("NAME") or not database.get("HOST"):
        problems.append("no database name or host")
    if "postgis" not in database.get("ENGINE", ""):
        problems.append(f"engine {database.get('ENGINE')}")
    where = f"{database.get('USER') or '-'}@{database.get('HOST')}:{database.get('PORT') or 5432}"
    return judged(problems, f"{source}: PostGIS at {where}/{database.get('NAME')}")


def _database(context: Context) -> dict:
    def compute() -> dict:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT version(), current_setting('statement_timeout')")
            version, statement_timeout = cursor.fetchone()
            try:
                cursor.execute("SELECT postgis_full_version()")
                postgis = cursor.fetchone()[0]
            except Exception as error:
                postgis = error
        pool = connection.pool
        return {
            "version": version.split(" on ")[0],
            "statement_timeout": statement_timeout,
            "postgis": postgis,
            "pool": pool.get_stats() if pool is not None else None,
        }

    return context.once("database", compute)


@check("P1.18", "P4.1", "P11.16")
def postgis(context: Context) -> Outcome:
    facts = _database(context)
    if isinstance(facts["postgis"], Exception):
        return failed(f"{facts['version']}; PostGIS missing: {describe(facts['postgis'])}")
    version = re.search(r'POSTGIS="([^"]+)"', facts["postgis"])
    return passed(f"{facts['version']}, PostGIS {version[1] if version else facts['postgis']}")


@check("P1.17", "P4.4")
def database_pooling(context: Context) -> Outcome:
    database = settings.DATABASES["default"]
    pool = database.get("OPTIONS", {}).get("pool")
    if pool:
        stats = _database(context)["pool"] or {}
        return passed(
            f"psycopg pool of {stats.get('pool_min')}-{stats.get('pool_max')} connections "
            f"({stats.get('pool_size')} open, {stats.get('pool_available')} idle), waiting up to "
            f"{pool.get('timeout', 30)} s; used instead of CONN_MAX_AGE=600, which ASGI never "
            "reuses (README)"
        )
    if database.get("CONN_MAX_AGE", 0) >= 60 or database.get("CONN_MAX_AGE") is None:
        return passed(f"persistent connections, CONN_MAX_AGE={database.get('CONN_MAX_AGE')}")
    return failed("no pool and CONN_MAX_AGE=0: a new connection for every request")


@check("P4.5")
def database_timeouts(context: Context) -> Outcome:
    options = settings.DATABASES["default"].get("OPTIONS", {})
    connect_timeout = options.get("connect_timeout")
    statement_timeout = _database(context)["statement_timeout"]
    problems = []
    if not connect_timeout or int(connect_timeout) > 10:
        problems.append(f"connect_timeout={connect_timeout}")
    if statement_timeout in {"0", ""}:
        problems.append("no statement_timeout on the server connection")
    return judged(
        problems, f"connect_timeout={connect_timeout} s, statement_timeout={statement_timeout}"
    )


@check("P11.8", "P12.16")
def migrations_applied(context: Context) -> Outcome:
    def compute():
        from django.db import connection
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        return len(executor.loader.applied_migrations), [f"{m.app_label}.{m.name}" for m, _ in plan]

    applied, pending = context.once("migrations", compute)
    if pending:
        shown = ", ".join(pending[:5]) + (" …" if len(pending) > 5 else "")
        return failed(f"{len(pending)} migrations not applied: {shown}")
    return passed(f"{applied} migrations applied, none pending")


@check("P9.13")
def migrations_present(context: Context) -> Outcome:
    from django.apps import apps
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.questioner import NonInteractiveMigrationQuestioner
    from django.db.migrations.state import ProjectState

    loader = MigrationLoader(None, ignore_no_migrations=True)
    conflicts = loader.detect_conflicts()
    changes = MigrationAutodetector(
        loader.project_state(),
        ProjectState.from_apps(apps),
        NonInteractiveMigrationQuestioner(dry_run=True, verbosity=0),
    ).changes(graph=loader.graph)
    problems = []
    if changes:
        problems.append(f"models of {', '.join(sorted(changes))} changed without a migration")
    if conflicts:
        problems.append(f"conflicting migrations in {', '.join(sorted(conflicts))}")
    return judged(problems, "every model change has its migration (makemigrations --check)")


@check("P5.15", "P6.21", "P9.18")
def dead_letters(context: Context) -> Outcome:
    from core.models import DeadLetter

    open_letters = DeadLetter.objects.filter(status=DeadLetter.Status.OPEN)
    count = open_letters.count()
    oldest = open_letters.order_by("created_at").values_list("created_at", flat=True).first()
    since = f", the oldest from {oldest:%Y-%m-%d %H:%M}" if oldest else ""
    return passed(f"dead-letter table in use: {count} open{since} (admin: Dead letters)")
