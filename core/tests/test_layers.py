"""The apps form layers and imports point down (the style guide's convention 13): core ← accounts ←
orders ← riders, payments ← delivery ← ops, and readiness on core alone. Read from the source
(every import, function-local ones too; tests and migrations left out), so an import that points
up or sideways fails here before it becomes a cycle. Where a higher app must follow a lower
one's work, the lower one calls hooks the higher one registers in its AppConfig.ready()
(orders.state's transition hooks).

Tooling sits above the apps: devstack starts the stack's processes and may import any app, but
no app imports it; bench/ and proof/ launch through devstack, not through core.tests (whose
helpers are the tests' own), and devstack imports neither of them.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What each app may import, besides itself.
MAY_IMPORT = {
    "core": set(),
    "accounts": {"core"},
    "orders": {"core", "accounts"},
    "riders": {"core", "accounts", "orders"},
    "payments": {"core", "accounts", "orders"},
    "delivery": {"core", "accounts", "orders", "riders", "payments"},
    "ops": {"core", "accounts", "orders", "riders", "payments", "delivery"},
    "readiness": {"core"},  # checks a deployment from outside the domain
}


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, by its full name; `from a.b import c` counts as a.b and
    a.b.c (c may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imported_apps(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)} & set(MAY_IMPORT)


def app_sources() -> list[tuple[str, Path]]:
    """(app, file) for the apps' own code: tests and migrations left out."""
    return [
        (app, path)
        for app in MAY_IMPORT
        for path in sorted((ROOT / app).rglob("*.py"))
        if not {"tests", "migrations"} & set(path.parts)
    ]


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for app, path in app_sources():
        for other in imported_apps(path) - MAY_IMPORT[app] - {app}:
            found.add((path.relative_to(ROOT).as_posix(), other))
    return found


def imports_of(folders: tuple[str, ...], *, under: str) -> set[tuple[str, str]]:
    """(file, module) for every import of `under` or a module below it in those folders."""
    return {
        (path.relative_to(ROOT).as_posix(), name)
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in imported_modules(path)
        if name == under or name.startswith(f"{under}.")
    }


def test_every_app_is_listed():
    apps = {path.parent.name for path in ROOT.glob("*/apps.py")}
    assert apps == set(MAY_IMPORT)


def test_imports_point_down_the_layers():
    assert not upward_imports(), f"imports that point up a layer or sideways: {upward_imports()}"


def test_the_check_sees_a_function_local_import(tmp_path):
    module = tmp_path / "services.py"
    module.write_text("def later():\n    from delivery.services import offer_accept\n")
    assert imported_apps(module) == {"delivery"}


def test_no_app_imports_devstack():
    found = {
        path.relative_to(ROOT).as_posix()
        for _, path in app_sources()
        if any(name.split(".")[0] == "devstack" for name in imported_modules(path))
    }
    assert not found, f"apps that import the tooling (devstack): {found}"


def test_bench_and_proof_launch_through_devstack_not_core_tests():
    found = imports_of(("bench", "proof"), under="core.tests")
    assert not found, f"imports of core.tests from bench/ or proof/: {found}"


def test_devstack_imports_neither_bench_nor_proof():
    found = imports_of(("devstack",), under="bench") | imports_of(("devstack",), under="proof")
    assert not found, f"devstack imports what stands on it: {found}"


def test_the_check_sees_core_tests_however_imported(tmp_path):
    module = tmp_path / "bench.py"
    module.write_text("from core import tests\nimport core.tests.lock_order\n")
    names = imported_modules(module)
    assert {"core.tests", "core.tests.lock_order"} <= names


def test_no_app_imports_another_apps_endpoints():
    """Views and consumers share shapes through <app>/serializers.py, permissions through
    <app>/permissions.py, never through another app's apis.py (only URL confs name views)."""
    found = {
        (path.relative_to(ROOT).as_posix(), module)
        for app, path in app_sources()
        if not path.name.endswith("urls.py")
        for module in imported_modules(path)
        if module.partition(".")[0] in MAY_IMPORT
        and module.partition(".")[0] != app
        and module.split(".")[1:2] == ["apis"]
    }
    assert not found, f"imports of another app's apis module: {found}"
