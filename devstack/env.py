"""Starts nothing: where the stack's processes run (the project and its virtualenv) and the
environment each is given, built from scratch so no developer .env or shell variable leaks in."""

import os
import secrets
from pathlib import Path
from urllib.parse import quote

from devstack.ports import LOCALHOST

PROJECT_DIR = Path(__file__).resolve().parents[1]
VENV_BIN = PROJECT_DIR / ".venv" / "bin"


def database_url(settings_dict: dict, *, host: str | None = None, port: int | None = None) -> str:
    """A postgres:// URL for a Django DATABASES entry, optionally aimed at another address."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = host or settings_dict.get("HOST") or LOCALHOST
    port = port or settings_dict.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"


def base_env(**overrides: str) -> dict[str, str]:
    """An environment built from scratch: no developer .env, no variables leaking in."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(
        {
            "DJANGO_ENV_FILE": "",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.update(overrides)
    return env


def local_production_env(**changes: str | None) -> dict[str, str]:
    """A valid production configuration for a server on 127.0.0.1 over plain HTTP.

    A change of None removes that variable (to test what its absence does).
    """
    env = base_env(
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(45),  # 60 random characters
        ALLOWED_HOSTS="localhost,127.0.0.1",
        CORS_ALLOWED_ORIGINS="https://app.example.com",
        SECURE_SSL_REDIRECT="false",
    )
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
