"""config/asgi.py sets Django up before it imports Channels and the consumers (checklist P3.15).

channels.auth and delivery.consumers import Django models at module level; imported before
`django.setup()` they would raise AppRegistryNotReady. Proven the way gunicorn loads
the module: imported first thing in a fresh interpreter.
"""

import ast
import json

import pytest
from django.conf import settings

from devstack.commands import run_python
from devstack.env import PROJECT_DIR, base_env

_IMPORT_ASGI_FIRST = """
import json, sys
from django.apps import apps
ready_before = apps.ready
import config.asgi
print(json.dumps({
    "ready_before": ready_before,
    "ready_after": apps.ready,
    "consumers_loaded": "delivery.consumers" in sys.modules,
    "application": type(config.asgi.application).__name__,
}))
"""


@pytest.mark.checklist("P3.15")
def test_importing_the_asgi_module_first_sets_django_up_before_the_consumers_load():
    # when a fresh interpreter imports config.asgi before anything else, as gunicorn does
    result = run_python(
        _IMPORT_ASGI_FIRST, env=base_env(DJANGO_ENV="test", REDIS_URL=settings.REDIS_URL)
    )

    # then it loads: the apps were ready by the time the consumers' models were imported
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {
        "ready_before": False,
        "ready_after": True,
        "consumers_loaded": True,
        "application": "ProtocolTypeRouter",
    }


@pytest.mark.checklist("P3.15", configured=True)
def test_django_is_set_up_before_any_channels_or_app_import():
    tree = ast.parse((PROJECT_DIR / "config" / "asgi.py").read_text())
    setup_line = next(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and (node.func.value.id, node.func.attr) == ("django", "setup")
    )
    late_imports = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and node.module.split(".")[0] in {"channels", "delivery", "core", "accounts"}
    ]

    assert late_imports, "config/asgi.py no longer imports channels or the consumers"
    assert all(node.lineno > setup_line for node in late_imports), [
        (node.module, node.lineno) for node in late_imports
    ]
