"""Phase 1 settings lines the refusal tests leave implicit, each in a fresh process.

- The secret key only ever comes from the environment: outside production a missing key is
  random per process (never a default written in the code); production uses the one it is given.
- SECURE_BROWSER_XSS_FILTER stays on in production next to nosniff (Django 4+ no longer sends
  X-XSS-Protection; see the note on P1.15 in checklist/lines.toml).
"""

import secrets

import pytest

from core.tests.production_env import production_env, settings_as_json
from devstack.env import base_env


@pytest.mark.checklist("P1.2", "P7.3", "P10.2")
def test_without_a_secret_key_outside_production_each_process_makes_its_own():
    # given development with no DJANGO_SECRET_KEY anywhere (base_env reads no .env)
    env = base_env(DJANGO_ENV="development", REDIS_URL="")
    assert "DJANGO_SECRET_KEY" not in env

    # when two processes load the settings
    first = settings_as_json(env, "SECRET_KEY")["SECRET_KEY"]
    second = settings_as_json(env, "SECRET_KEY")["SECRET_KEY"]

    # then each made a long random key of its own: there is no key in the code to fall back on
    assert len(first) >= 50 and len(second) >= 50
    assert first != second


@pytest.mark.checklist("P1.2", configured=True)
def test_production_uses_exactly_the_key_of_its_environment():
    # given two deployments (say staging and production) with keys of their own
    staging_key, production_key = secrets.token_urlsafe(50), secrets.token_urlsafe(50)

    # when each loads the settings
    staging = settings_as_json(production_env(DJANGO_SECRET_KEY=staging_key), "SECRET_KEY")
    production = settings_as_json(production_env(DJANGO_SECRET_KEY=production_key), "SECRET_KEY")

    # then each runs with its own key, as given
    assert staging["SECRET_KEY"] == staging_key
    assert production["SECRET_KEY"] == production_key


@pytest.mark.checklist("P1.15", configured=True)
def test_production_keeps_the_browser_xss_filter_setting_and_nosniff_on():
    values = settings_as_json(
        production_env(), "SECURE_BROWSER_XSS_FILTER", "SECURE_CONTENT_TYPE_NOSNIFF"
    )

    assert values == {"SECURE_BROWSER_XSS_FILTER": True, "SECURE_CONTENT_TYPE_NOSNIFF": True}
