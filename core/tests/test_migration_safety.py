"""The migrations this release adds leave the previous release's code working (expand, then
contract: docs/deploy.md, "Rolling back"). The rollback test (releases.py) runs that code on
the migrated database; this reads the new migrations for what breaks it on any path:

- a column or table dropped or renamed while the previous release still uses it (its models
  still name it): drop it in the release after the one that stopped using it;
- a NOT NULL column added without a database default (`db_default`), or an existing column
  made NOT NULL: the previous release's inserts do not fill it;
- a column's name or type changed in place;
- raw SQL or Python, unless the migration says why the previous release survives it
  (`rollback_note` on the Migration class).
"""

import ast
import sys
from pathlib import Path

import pytest
from django.db import models
from django.db.migrations import Migration
from django.db.migrations import operations as ops
from django.db.migrations.loader import MigrationLoader
from django.db.models import NOT_PROVIDED

from core.tests import releases
from devstack.env import PROJECT_DIR

pytestmark = pytest.mark.django_db


def models_in(tree: Path, app: str) -> dict[str, set[str]]:
    """{lower-case model name: its field names} in an app's models.py of a release's tree, read
    from the source: the fields and models the code of that release uses."""
    path = tree / app / "models.py"
    found: dict[str, set[str]] = {}
    if not path.exists():
        return found
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            found[node.name.lower()] = {
                target.id
                for statement in node.body
                if isinstance(statement, ast.Assign)
                for target in statement.targets
                if isinstance(target, ast.Name)
            }
    return found


def problems_of(migration, loader: MigrationLoader, previous: Path) -> list[str]:
    app = migration.app_label
    used = models_in(previous, app)
    state = loader.project_state((app, migration.name), at_end=False)
    found = []

    def still_used(model: str, field: str | None = None) -> bool:
        return model in used and (field is None or field in used[model])

    for operation in migration.operations:
        what = f"{app}.{migration.name}: {operation.describe()}"
        model = getattr(operation, "model_name", None) or getattr(operation, "name", "")
        model = model.lower()
        if isinstance(operation, ops.RemoveField) and still_used(model, operation.name):
            found.append(f"{what}: the previous release still uses the column")
        elif isinstance(operation, ops.RenameField) and still_used(model, operation.old_name):
            found.append(f"{what}: the previous release still uses the old name")
        elif isinstance(operation, ops.DeleteModel) and still_used(model):
            found.append(f"{what}: the previous release still uses the table")
        elif isinstance(operation, ops.RenameModel) and still_used(operation.old_name_lower):
            found.append(f"{what}: the previous release still uses the old table")
        elif isinstance(operation, ops.AlterModelTable):
            found.append(f"{what}: the previous release reads the old table name")
        elif isinstance(operation, ops.AddField) and _needs_a_value(operation.field):
            found.append(f"{what}: NOT NULL without db_default, the old release's inserts fail")
        elif isinstance(operation, ops.AlterField):
            old = state.models[app, model].fields[operation.name]
            new = operation.field
            if old.null and not new.null and new.db_default is NOT_PROVIDED:
                found.append(f"{what}: made NOT NULL, the previous release may write NULL")
            if old.db_column != new.db_column or type(old) is not type(new):
                found.append(f"{what}: column renamed or retyped in place")
        elif isinstance(operation, ops.RunSQL | ops.RunPython) and not getattr(
            migration, "rollback_note", ""
        ):
            found.append(f"{what}: raw SQL or Python without a rollback_note")
        operation.state_forwards(app, state)  # the next operation sees this one's change
    return found


def _needs_a_value(field: models.Field) -> bool:
    return not (field.null or field.many_to_many or field.db_default is not NOT_PROVIDED)


def new_migrations(previous: Path) -> tuple[MigrationLoader, list]:
    """The migrations on disk here that the previous release's tree does not hold."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = releases.migration_names(previous)
    new = []
    for (app, _), migration in sorted(loader.disk_migrations.items()):
        if not (PROJECT_DIR / app).is_dir():
            continue  # Django's and the libraries' own
        path = Path(sys.modules[migration.__module__].__file__)
        if str(path.relative_to(PROJECT_DIR)) not in known:
            new.append(migration)
    return loader, new


@pytest.mark.checklist("P12.5", configured=True)
def test_the_migrations_of_this_release_leave_the_previous_release_working(tmp_path):
    previous = releases.export(releases.previous_release(), tmp_path / "previous")
    loader, new = new_migrations(previous)
    assert new, "no migration is new since the previous release"
    problems = [p for migration in new for p in problems_of(migration, loader, previous)]
    assert problems == []


# What the check refuses, shown on migrations written for the purpose against this release's
# own models (the previous release being this tree).
CASES = {
    "drop a used column": ops.RemoveField("order", "cancelled_late"),
    "rename a used column": ops.RenameField("order", "cancelled_late", "late"),
    "drop a used table": ops.DeleteModel("rating"),
    "add NOT NULL without db_default": ops.AddField(
        "order", "probe", models.CharField(max_length=5, default="x")
    ),
    "make a column NOT NULL": ops.AlterField(
        "order", "rider", models.ForeignKey("riders.Rider", on_delete=models.PROTECT)
    ),
    "raw SQL": ops.RunSQL("SELECT 1", reverse_sql="SELECT 1"),
}


def probe(*operations) -> tuple[Migration, MigrationLoader]:
    """A migration of orders after its latest one, known to a loader of this tree."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    latest = ("orders", max(name for app, name in loader.disk_migrations if app == "orders"))
    migration = Migration("9999_probe", "orders")
    migration.operations = list(operations)
    migration.dependencies = [latest]
    loader.graph.add_node(("orders", "9999_probe"), migration)
    loader.graph.add_dependency(migration, ("orders", "9999_probe"), latest)
    return migration, loader


@pytest.mark.parametrize("operation", CASES.values(), ids=CASES.keys())
def test_a_migration_that_breaks_the_previous_release_is_refused(operation):
    migration, loader = probe(operation)

    problems = problems_of(migration, loader, PROJECT_DIR)

    assert len(problems) == 1, problems


def test_expand_and_contract_steps_pass(tmp_path):
    # given a previous release whose models no longer use Order.cancelled_late
    source = (PROJECT_DIR / "orders" / "models.py").read_text()
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "models.py").write_text(source.replace("cancelled_late =", "gone ="))

    # when a migration adds columns it can live without, and drops the one it stopped using
    migration, loader = probe(
        ops.AddField("order", "probe", models.CharField(max_length=5, db_default="x")),
        ops.AddField("order", "probe_note", models.CharField(max_length=5, null=True)),
        ops.RemoveField("order", "cancelled_late"),
    )

    # then nothing is refused
    assert problems_of(migration, loader, tmp_path) == []
