"""The code itself is valid: every module imports under production settings, and the shell
scripts the image runs parse and pass shellcheck. Each check is shown to reject a broken copy,
so a pass means something."""

import json
import shutil
import subprocess

import pytest

from core.tests.production_env import production_env
from devstack.commands import run_python
from devstack.env import PROJECT_DIR

# The service's own packages (tests are imported by pytest's collection already).
PACKAGES = ["config", "core", "accounts", "orders", "riders", "delivery", "payments", "ops"]
SHELL_SCRIPTS = [
    PROJECT_DIR / "entrypoint.sh",
    PROJECT_DIR / "deploy" / "docker" / "healthcheck.sh",
]

_IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys, traceback, django
django.setup()
imported, failed = [], {}

def note_failure(name):
    failed[name] = traceback.format_exc(limit=-3)

for package_name in sys.argv[1:]:
    try:
        package = importlib.import_module(package_name)
    except Exception:
        note_failure(package_name)
        continue
    imported.append(package_name)
    for module in pkgutil.walk_packages(package.__path__, package_name + ".", note_failure):
        if ".tests" in module.name or module.name in failed:
            continue
        try:
            importlib.import_module(module.name)
            imported.append(module.name)
        except Exception:
            note_failure(module.name)
print(json.dumps({"imported": imported, "failed": failed}))
"""


def _import_everything(*packages: str, **env_changes) -> dict:
    result = run_python(
        _IMPORT_EVERY_MODULE, *packages, env=production_env(**env_changes), timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.checklist("P11.1", "P11.3", "P11.6")
def test_every_module_of_the_service_imports_under_production_settings(tmp_path):
    # when a fresh production process imports every module of every package
    report = _import_everything(*PACKAGES)

    # then none failed, and the walk really went through the code
    assert report["failed"] == {}, "\n".join(report["failed"].values())
    imported = set(report["imported"])
    for module in ("config.settings", "config.celery", "config.asgi", "config.wsgi"):
        assert module in imported
    assert "core.management.commands.migrate_locked" in imported
    assert any(module.startswith("orders.migrations.0") for module in imported)
    assert len(imported) > 100

    # and a module that cannot import is reported, so the pass above means something
    broken = tmp_path / "broken_package"
    broken.mkdir()
    (broken / "__init__.py").write_text("")
    (broken / "views.py").write_text("from django.conf import settings\nimport no_such_module\n")
    report = _import_everything("broken_package", PYTHONPATH=str(tmp_path))
    assert list(report["failed"]) == ["broken_package.views"]
    assert "No module named 'no_such_module'" in report["failed"]["broken_package.views"]


@pytest.mark.checklist("P11.4")
def test_the_shell_scripts_parse_and_pass_shellcheck(tmp_path):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (apt-get install shellcheck)"
    for script in SHELL_SCRIPTS:
        # when bash parses the whole script without running it
        parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)

        # then it is valid
        assert parsed.returncode == 0, f"{script.name}: {parsed.stderr}"

    # and shellcheck finds nothing wrong in them
    checked = subprocess.run(
        [shellcheck, *map(str, SHELL_SCRIPTS)], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # and a copy with one `esac` missing is rejected by both
    broken = tmp_path / "entrypoint.sh"
    broken.write_text(SHELL_SCRIPTS[0].read_text().replace("\nesac\n", "\n", 1))
    assert subprocess.run(["bash", "-n", str(broken)], capture_output=True).returncode != 0
    assert subprocess.run([shellcheck, str(broken)], capture_output=True).returncode != 0
