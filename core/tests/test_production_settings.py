"""Production settings refuse every unsafe value by name, accept a safe set, and log no secret."""

import json
import secrets

import pytest

from core.tests.production_env import (
    PUBLIC_HOST,
    production_env,
    refusal_problems,
    settings_as_json,
    start_django,
)
from devstack.commands import run_manage, run_python
from devstack.ports import free_port

POSTGIS_ENGINE = "django.contrib.gis.db.backends.postgis"
NO_DATABASE = {"DATABASE_URL": None}  # and no POSTGRES_* either: production_env sets none


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        pytest.param(
            {"DJANGO_SECRET_KEY": None},
            "DJANGO_SECRET_KEY",
            id="secret-missing",
            marks=[
                pytest.mark.checklist("P1.5", "P7.19", "P10.2"),
                pytest.mark.checklist("P1.2", configured=True),
            ],
        ),
        pytest.param(
            {"DJANGO_SECRET_KEY": ""},
            "DJANGO_SECRET_KEY",
            id="secret-empty",
            marks=[
                pytest.mark.checklist("P1.5", "P7.19"),
                pytest.mark.checklist("P1.2", configured=True),
            ],
        ),
        pytest.param(
            {"DJANGO_SECRET_KEY": secrets.token_urlsafe(30)},
            "DJANGO_SECRET_KEY",
            id="secret-short",
            marks=[pytest.mark.checklist("P1.5"), pytest.mark.checklist("P1.2", configured=True)],
        ),
        pytest.param(
            # Long and random, but the placeholder `startproject` writes.
            {"DJANGO_SECRET_KEY": "django-insecure-" + secrets.token_urlsafe(50)},
            "DJANGO_SECRET_KEY",
            id="secret-django-insecure",
            marks=[pytest.mark.checklist("P1.5"), pytest.mark.checklist("P1.2", configured=True)],
        ),
        pytest.param(
            {"DJANGO_SECRET_KEY": "ab" * 40},
            "DJANGO_SECRET_KEY",
            id="secret-few-characters",
            marks=[pytest.mark.checklist("P1.5"), pytest.mark.checklist("P1.2", configured=True)],
        ),
        pytest.param(
            {"ALLOWED_HOSTS": None},
            "ALLOWED_HOSTS",
            id="hosts-missing",
            marks=[
                pytest.mark.checklist("P1.6", "P7.20"),
                pytest.mark.checklist("P1.3", configured=True),
            ],
        ),
        pytest.param(
            {"ALLOWED_HOSTS": " , "},
            "ALLOWED_HOSTS",
            id="hosts-blank",
            marks=[
                pytest.mark.checklist("P1.6", "P7.20"),
                pytest.mark.checklist("P1.3", configured=True),
            ],
        ),
        pytest.param(
            {"ALLOWED_HOSTS": "*"},
            "ALLOWED_HOSTS",
            id="hosts-star",
            marks=[
                pytest.mark.checklist("P1.6"),
                pytest.mark.checklist("P1.3", "P7.4", configured=True),
            ],
        ),
        pytest.param(
            {"ALLOWED_HOSTS": f"{PUBLIC_HOST},*"},
            "ALLOWED_HOSTS",
            id="hosts-star-among-others",
            marks=[
                pytest.mark.checklist("P1.6"),
                pytest.mark.checklist("P1.3", "P7.4", configured=True),
            ],
        ),
        pytest.param(
            {"CORS_ALLOWED_ORIGINS": None},
            "CORS_ALLOWED_ORIGINS",
            id="cors-missing",
            marks=[
                pytest.mark.checklist("P1.7", "P7.23"),
                pytest.mark.checklist("P1.4", configured=True),
            ],
        ),
        pytest.param(
            {"CORS_ALLOWED_ORIGINS": "*"},
            "CORS_ALLOWED_ORIGINS",
            id="cors-star",
            marks=[
                pytest.mark.checklist("P1.7"),
                pytest.mark.checklist("P1.4", "P7.7", "P10.14", configured=True),
            ],
        ),
        pytest.param(
            {"CORS_ALLOWED_ORIGINS": "app.example.com"},
            "CORS_ALLOWED_ORIGINS",
            id="cors-origin-without-scheme",
            marks=pytest.mark.checklist("P1.7"),
        ),
        pytest.param(
            NO_DATABASE,
            "DATABASE_URL",
            id="database-missing",
            marks=[pytest.mark.checklist("P7.21"), pytest.mark.checklist("P1.16", configured=True)],
        ),
        pytest.param(
            {"DATABASE_URL": "mysql://delivery:pw@127.0.0.1:3306/delivery"},
            "DATABASE_URL",
            id="database-mysql",
            marks=pytest.mark.checklist("P4.2"),
        ),
        pytest.param(
            {"DATABASE_URL": "postgres://delivery:pw@127.0.0.1:5432/"},
            "DATABASE_URL",
            id="database-without-name",
            marks=pytest.mark.checklist("P4.2"),
        ),
        pytest.param(
            # Half of the POSTGRES_* fallback is not a database either.
            {**NO_DATABASE, "POSTGRES_DB": "delivery", "POSTGRES_USER": "delivery"},
            "DATABASE_URL",
            id="database-postgres-vars-without-host",
            marks=[
                pytest.mark.checklist("P4.3", "P7.21"),
                pytest.mark.checklist("P1.16", configured=True),
            ],
        ),
        pytest.param(
            {"REDIS_URL": None},
            "REDIS_URL",
            id="redis-missing",
            marks=[
                pytest.mark.checklist("P7.22"),
                pytest.mark.checklist("P1.22", "P7.6", configured=True),
            ],
        ),
        pytest.param(
            {"REDIS_URL": "http://127.0.0.1:6379/0"},
            "REDIS_URL",
            id="redis-not-redis",
            marks=pytest.mark.checklist("P1.22", configured=True),
        ),
        pytest.param(
            {"REDIS_URL": "rediss://cache.internal:6379/0"},
            "ssl_cert_reqs",
            id="redis-tls-without-certificate-check",
            marks=pytest.mark.checklist("P8.12", configured=True),
        ),
        pytest.param(
            {"DEBUG": "true"},
            "DEBUG",
            id="debug-on",
            marks=pytest.mark.checklist("P1.1", "P7.2", configured=True),
        ),
        # '*' lets every client choose the address the per-IP limits count
        pytest.param(
            {"FORWARDED_ALLOW_IPS": "10.0.0.0/8,*"}, "FORWARDED_ALLOW_IPS", id="proxies-any"
        ),
        pytest.param(
            {"FORWARDED_ALLOW_IPS": "10.0.0.0/8,load-balancer"},
            "FORWARDED_ALLOW_IPS",
            id="proxies-not-addresses",
        ),
    ],
)
def test_production_refuses_to_start_on_an_unsafe_value(changes, named):
    # given a safe production environment with exactly one unsafe value
    env = production_env(**changes)

    # when
    result = start_django(env)

    # then it stops, and the one problem it lists names the variable
    assert result.returncode != 0
    problems = refusal_problems(result.stderr)
    assert len(problems) == 1, problems
    assert named in problems[0]


@pytest.mark.checklist("P1.5", "P1.6", "P1.7", "P6.22", "P7.19", "P7.20", "P7.21", "P7.22", "P7.23")
def test_production_lists_every_problem_in_one_message():
    # given
    env = production_env(
        DJANGO_SECRET_KEY=None,
        ALLOWED_HOSTS="*",
        CORS_ALLOWED_ORIGINS=None,
        DATABASE_URL=None,
        REDIS_URL=None,
        DEBUG="true",
    )

    # when
    result = start_django(env)

    # then
    assert result.returncode != 0
    assert result.stderr.count("Refusing to start") == 1
    problems = refusal_problems(result.stderr)
    named = ["DEBUG", "DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "CORS_ALLOWED_ORIGINS"]
    named += ["DATABASE_URL", "REDIS_URL"]
    assert len(problems) == len(named), problems
    assert {name for name in named for problem in problems if name in problem} == set(named)


@pytest.mark.checklist("P7.1", configured=True)
def test_an_unknown_django_env_is_refused_rather_than_run_as_development():
    # given a typo that would otherwise fall back to development defaults (DEBUG on)
    env = production_env(DJANGO_ENV="prod")

    # when
    result = start_django(env)

    # then
    assert result.returncode != 0
    assert "DJANGO_ENV must be development, test or production" in result.stderr


@pytest.mark.checklist("P1.22", "P11.1")
@pytest.mark.checklist(
    "P1.1", "P1.8", "P1.9", "P1.10", "P7.1", "P7.2", "P10.7", "P11.14", "P11.15", configured=True
)
def test_a_safe_production_environment_starts_with_hardened_settings():
    # when
    values = settings_as_json(
        production_env(),
        "DJANGO_ENV",
        "DEBUG",
        "ALLOWED_HOSTS",
        "CORS_ALLOWED_ORIGINS",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "REDIS_AVAILABLE",
        "CELERY_TASK_ALWAYS_EAGER",
        setup=True,
    )

    # then
    assert values == {
        "DJANGO_ENV": "production",
        "DEBUG": False,
        "ALLOWED_HOSTS": [PUBLIC_HOST],
        "CORS_ALLOWED_ORIGINS": ["https://app.example.com"],
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "REDIS_AVAILABLE": True,
        "CELERY_TASK_ALWAYS_EAGER": False,
    }


@pytest.mark.checklist("P1.1", "P1.8", "P1.9", "P1.10", "P1.14", "P11.15", configured=True)
def test_deploy_checks_pass_at_warning_level_in_production():
    # when
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.checklist("P4.3")
@pytest.mark.checklist("P1.16", "P7.5", configured=True)
def test_postgres_variables_configure_postgis_when_there_is_no_database_url():
    # given
    env = production_env(
        DATABASE_URL=None,
        POSTGRES_DB="orders_db",
        POSTGRES_USER="app_user",
        POSTGRES_PASSWORD="pg-Secret-123",
        POSTGRES_HOST="db.internal.example",
        POSTGRES_PORT="6543",
    )

    # when
    database = settings_as_json(env, "DATABASES")["DATABASES"]["default"]

    # then
    assert database["ENGINE"] == POSTGIS_ENGINE
    assert (
        database["NAME"],
        database["USER"],
        database["PASSWORD"],
        database["HOST"],
        str(database["PORT"]),
    ) == ("orders_db", "app_user", "pg-Secret-123", "db.internal.example", "6543")


@pytest.mark.checklist("P4.3")
def test_postgres_port_defaults_to_5432():
    # given
    env = production_env(DATABASE_URL=None, POSTGRES_DB="orders_db", POSTGRES_HOST="db.internal")

    # when
    database = settings_as_json(env, "DATABASES")["DATABASES"]["default"]

    # then
    assert (database["HOST"], str(database["PORT"])) == ("db.internal", "5432")


@pytest.mark.checklist("P4.3")
@pytest.mark.checklist("P1.16", "P7.5", configured=True)
def test_database_url_wins_over_postgres_variables():
    # given
    env = production_env(
        DATABASE_URL="postgres://url_user:url-pw@url-host.example:5433/url_db",
        POSTGRES_DB="vars_db",
        POSTGRES_HOST="vars-host.example",
    )

    # when
    database = settings_as_json(env, "DATABASES")["DATABASES"]["default"]

    # then
    assert (database["NAME"], database["HOST"]) == ("url_db", "url-host.example")


@pytest.mark.checklist("P4.2")
@pytest.mark.checklist("P8.3", "P8.11", configured=True)
@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgis"])
def test_every_postgres_url_scheme_gets_the_postgis_engine(scheme):
    # given the kind of URL Railway or RDS hand out
    env = production_env(DATABASE_URL=f"{scheme}://rds_user:rds-pw@rds.example:5433/shop")

    # when
    database = settings_as_json(env, "DATABASES")["DATABASES"]["default"]

    # then
    assert database["ENGINE"] == POSTGIS_ENGINE
    assert (
        database["NAME"],
        database["USER"],
        database["PASSWORD"],
        database["HOST"],
        str(database["PORT"]),
    ) == ("shop", "rds_user", "rds-pw", "rds.example", "5433")


_LOG_STARTUP = """
import django
django.setup()
from config.startup import log_startup_summary
log_startup_summary("web")
"""


@pytest.mark.checklist("P1.23", "P6.7", "P6.22", "P7.24")
@pytest.mark.parametrize(
    "redis_credentials", [":R3dis-only-pa55@", "default:R3dis-user-pa55@"], ids=["password", "acl"]
)
def test_startup_log_shows_the_configuration_but_no_password(redis_credentials):
    # given passwords in both URLs, and a Redis that is down so its URL is also logged in the
    # fallback warning
    database_password = "Db-pa55-" + secrets.token_hex(8)
    redis_password = redis_credentials.split(":")[1].rstrip("@")
    redis_port = free_port()
    env = production_env(
        ALLOWED_HOSTS=f"{PUBLIC_HOST},admin.example.com",
        DATABASE_URL=f"postgis://delivery:{database_password}@db.internal.example:6432/delivery",
        REDIS_URL=f"redis://{redis_credentials}127.0.0.1:{redis_port}/0",
    )

    # when
    result = run_python(_LOG_STARTUP, env=env)

    # then
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert database_password not in output
    assert redis_password not in output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    by_logger = [record for record in records if record["logger"] == "config.startup"]
    summary = next(record for record in by_logger if "web starting" in record["message"])
    assert summary["level"] == "INFO"
    for expected in (
        "env=production",
        "debug=False",
        f"allowed_hosts={PUBLIC_HOST},admin.example.com",
        "database=delivery@db.internal.example:6432/delivery",
        f"redis=redis://{redis_credentials.split(':')[0]}:***@127.0.0.1:{redis_port}/0",
    ):
        assert expected in summary["message"]
    warnings = [record["message"] for record in by_logger if record["level"] == "WARNING"]
    assert any(f"127.0.0.1:{redis_port}" in warning for warning in warnings), warnings
