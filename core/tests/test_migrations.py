"""CI fails when a model changes without a migration."""

import io
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections
from psycopg import sql

from devstack.env import PROJECT_DIR, base_env, database_url
from devstack.ports import LOCALHOST


@pytest.mark.django_db
@pytest.mark.checklist("P9.13", "P9.16")
def test_every_model_change_has_a_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exit_:
        pytest.fail(f"Models changed without a migration (exit {exit_.code}):\n{out.getvalue()}")


LOCAL_APPS = ["core", "accounts", "orders", "riders", "delivery", "payments"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.checklist("P9.14", "P9.16", "P12.5", "P4.10")
def test_every_migration_reverses_and_reapplies():
    # given a fully migrated database
    out = io.StringIO()
    try:
        # when each app is migrated back to zero (its dependents go with it) and forward again
        for app in LOCAL_APPS:
            if not _has_migrations(app):
                continue
            call_command("migrate", app, "zero", "--noinput", stdout=out)
            call_command("migrate", "--noinput", stdout=out)
        # then running migrate again has nothing left to do
        again = io.StringIO()
        call_command("migrate", "--noinput", stdout=again)
        assert "No migrations to apply" in again.getvalue()
    finally:
        call_command("migrate", "--noinput", stdout=out)


def _has_migrations(app: str) -> bool:
    from django.db.migrations.loader import MigrationLoader

    return any(label == app for label, _ in MigrationLoader(None).disk_migrations)


# What a freshly migrated database may hold: Django's and PostGIS's bookkeeping, and the ops
# groups with their permissions (orders 0003 and 0005), reference data every environment needs
# and that the same migrations remove when reversed. Rows anywhere else would be data written
# into a migration (a user, a service area, a tariff).
REFERENCE_TABLES = {
    "django_migrations",
    "django_content_type",
    "auth_permission",
    "auth_group",
    "auth_group_permissions",
    "spatial_ref_sys",
}


def _connect(settings_dict: dict, dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=settings_dict["HOST"] or LOCALHOST,
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"] or None,
        password=settings_dict["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
    )


@pytest.mark.slow
@pytest.mark.checklist("P9.15", "P11.8")
def test_a_fresh_database_holds_only_reference_data_after_migrating(settings):
    # given an empty database of its own on the tests' server
    db = connections["default"].settings_dict
    name = f"{db['NAME']}_fresh_{uuid.uuid4().hex[:8]}"
    admin = _connect(db, "postgres")
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        # when `manage.py migrate` runs on it, as on a new environment
        env = base_env(
            DJANGO_ENV="test",
            DATABASE_URL=database_url({**db, "NAME": name}),
            REDIS_URL=settings.REDIS_URL,
        )
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        with _connect(db, name) as fresh:
            tables = [
                table
                for (table,) in fresh.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            filled = {
                table
                for table in tables
                if fresh.execute(
                    sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
                ).fetchone()[0]
            }
            groups = {group for (group,) in fresh.execute("SELECT name FROM auth_group")}
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()

    # then every table exists and only the reference tables hold rows
    assert len(tables) > 20, tables
    assert {"django_migrations", "auth_group", "spatial_ref_sys"} <= filled  # the count works
    assert filled <= REFERENCE_TABLES, f"data written by migrations: {filled - REFERENCE_TABLES}"
    assert groups == {"dispatcher", "support", "finance"}
