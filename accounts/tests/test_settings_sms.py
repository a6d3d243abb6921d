"""SMS_PROVIDER at start-up: a typo stops any process, production names what is missing."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

_START = """
import django
django.setup()
from config.startup import log_startup_summary
log_startup_summary("web")
"""


def start(**variables: str) -> subprocess.CompletedProcess:
    """Loads the settings and logs the start-up summary in a fresh process under `variables`."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(
        DJANGO_ENV_FILE="",  # the developer's .env must not leak in
        DJANGO_SETTINGS_MODULE="config.settings",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3"),
        LOG_FORMAT="console",
        **variables,
    )
    return subprocess.run(
        [sys.executable, "-c", _START],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def production(**variables: str) -> dict[str, str]:
    return {
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "api.example.com",
        "CORS_ALLOWED_ORIGINS": "https://app.example.com",
        "DATABASE_URL": "postgis://delivery:delivery@127.0.0.1:5432/delivery",
        **variables,
    }


def test_an_unknown_provider_stops_even_a_development_process():
    result = start(DJANGO_ENV="development", SMS_PROVIDER="pigeon")

    assert result.returncode != 0
    assert "SMS_PROVIDER must be one of dummy, msg91, twilio, not 'pigeon'" in result.stderr


@pytest.mark.parametrize(
    ("variables", "missing", "present"),
    [
        ({"SMS_PROVIDER": "msg91"}, ["MSG91_AUTH_KEY", "MSG91_OTP_TEMPLATE_ID"], []),
        (
            {"SMS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": "AC123"},
            ["TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"],
            ["TWILIO_ACCOUNT_SID"],
        ),
    ],
    ids=["msg91", "twilio"],
)
def test_production_refuses_a_provider_without_its_credentials(variables, missing, present):
    result = start(**production(**variables))

    assert result.returncode != 0
    assert "Refusing to start (DJANGO_ENV=production)" in result.stderr
    problem = next(line for line in result.stderr.splitlines() if "SMS_PROVIDER=" in line)
    assert all(name in problem for name in missing)
    assert not any(name in problem for name in present)


@pytest.mark.checklist("P7.14")
def test_production_with_the_dummy_provider_starts_with_a_loud_warning():
    result = start(**production(SMS_PROVIDER="dummy"))

    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stdout.splitlines() if "SMS_PROVIDER=dummy" in line)
    assert "WARNING" in warning
    assert "NOT sent" in warning


def test_production_with_msg91_configured_starts_without_an_sms_warning():
    result = start(
        **production(SMS_PROVIDER="msg91", MSG91_AUTH_KEY="key", MSG91_OTP_TEMPLATE_ID="tmpl")
    )

    assert result.returncode == 0, result.stderr
    assert "SMS_PROVIDER" not in result.stdout
