"""The apps form layers and imports point down (the style guide's convention 13): core ← accounts ←
orders ← riders, payments ← delivery ← ops, and readiness on core alone. Read from the source
(every import, function-local ones too; tests and migrations left out), so an import that points
up or sideways fails here before it becomes a cycle. Where a higher app must follow a lower
one's work, the lower one calls hooks the higher one registers in its AppConfig.ready()
(orders.state's transition hooks).
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


def imported_apps(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names)
    return found & set(MAY_IMPORT)


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for app, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / app).rglob("*.py")):
            if {"tests", "migrations"} & set(path.parts):
                continue
            for other in imported_apps(path) - allowed - {app}:
                found.add((path.relative_to(ROOT).as_posix(), other))
    return found


def test_every_app_is_listed():
    apps = {path.parent.name for path in ROOT.glob("*/apps.py")}
    assert apps == set(MAY_IMPORT)


def test_imports_point_down_the_layers():
    assert not upward_imports(), f"imports that point up a layer or sideways: {upward_imports()}"


def test_the_check_sees_a_function_local_import(tmp_path):
    module = tmp_path / "services.py"
    module.write_text("def later():\n    from delivery.services import offer_accept\n")
    assert imported_apps(module) == {"delivery"}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_app_imports_another_apps_endpoints():
    """Views and consumers share shapes through <app>/serializers.py, permissions through
    <app>/permissions.py, never through another app's apis.py (only URL confs name views)."""
    found = set()
    for app in MAY_IMPORT:
        for path in sorted((ROOT / app).rglob("*.py")):
            if {"tests", "migrations"} & set(path.parts) or path.name.endswith("urls.py"):
                continue
            for module in imported_modules(path):
                other, _, rest = module.partition(".")
                if other in MAY_IMPORT and other != app and rest == "apis":
                    found.add((path.relative_to(ROOT).as_posix(), module))
    assert not found, f"imports of another app's apis module: {found}"
