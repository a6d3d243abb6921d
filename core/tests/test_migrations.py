"""CI fails when a model changes without a migration."""

import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_every_model_change_has_a_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exit_:
        pytest.fail(f"Models changed without a migration (exit {exit_.code}):\n{out.getvalue()}")


LOCAL_APPS = ["core", "accounts", "orders", "riders", "delivery", "payments"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
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
