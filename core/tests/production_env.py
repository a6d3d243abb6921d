"""A valid production environment, and ways to load the settings under it in a fresh process
(devstack.commands runs it)."""

import json
import re
import subprocess

from django.conf import settings
from django.db import connections

from devstack.commands import run_python
from devstack.env import database_url, local_production_env

PUBLIC_HOST = "api.example.com"
WEB_ORIGIN = "https://app.example.com"

_PROBLEM_LINE = re.compile(r"^  - (.+)$", re.MULTILINE)


def production_env(**changes: str | None) -> dict[str, str]:
    """Production as deployed behind a TLS proxy at PUBLIC_HOST.

    It points at the tests' database and Redis: the test database once pytest-django has made
    it (request `django_db_setup` before connecting), never the developer's own data.
    A change of None removes that variable. Built from scratch: no .env or shell leaks in.
    """
    deployed = {
        "ALLOWED_HOSTS": PUBLIC_HOST,
        "CORS_ALLOWED_ORIGINS": WEB_ORIGIN,
        "SECURE_SSL_REDIRECT": None,  # production's own default: on
        "DATABASE_URL": database_url(connections["default"].settings_dict),
        "REDIS_URL": settings.REDIS_URL,
    }
    return local_production_env(**{**deployed, **changes})


def start_django(env: dict[str, str]) -> subprocess.CompletedProcess:
    """What every process (gunicorn, Celery, manage.py) does first: load settings and apps."""
    return run_python("import django; django.setup()", env=env)


_PRINT_SETTINGS = """
import json, sys, django
from django.conf import settings
if sys.argv[1] == "setup":
    django.setup()
print(json.dumps({name: getattr(settings, name) for name in sys.argv[2:]}, default=str))
"""


def settings_as_json(env: dict[str, str], *names: str, setup: bool = False) -> dict:
    """The named settings as a fresh process under `env` sees them; `setup` loads the apps too."""
    result = run_python(_PRINT_SETTINGS, "setup" if setup else "-", *names, env=env)
    assert result.returncode == 0, f"settings did not load:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def refusal_problems(stderr: str) -> list[str]:
    """The problems listed by the settings' 'Refusing to start' message, one per entry."""
    assert "ImproperlyConfigured: Refusing to start (DJANGO_ENV=production)" in stderr, stderr
    message = stderr.split("Refusing to start", 1)[1]
    return _PROBLEM_LINE.findall(message)
