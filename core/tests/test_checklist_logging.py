"""Logging as each environment configures it, read in a fresh process after django.setup().

Where every handler writes, which level each logger lets through, and what one record of each
kind looks like on the process's stdout.
"""

import json

import pytest
from django.conf import settings
from django.db import connections

from core.tests.production_env import production_env
from devstack.commands import run_python
from devstack.env import base_env, database_url

_LOGGING_AS_CONFIGURED = """
import json, logging, sys, django
django.setup()
from django.db import connection

def level(name):
    return logging.getLevelName(logging.getLogger(name).getEffectiveLevel())

loggers = [logging.getLogger()] + [
    logger for logger in logging.Logger.manager.loggerDict.values()
    if isinstance(logger, logging.Logger)
]
destinations = set()
for logger in loggers:
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:
            names = {id(sys.stdout): "stdout", id(sys.stderr): "stderr"}
            destinations.add(names.get(id(handler.stream), repr(handler.stream)))
        else:
            destinations.add(type(handler).__name__)

logging.getLogger("django.request").error("checklist probe: django")
logging.getLogger("celery.worker").info("checklist probe: celery")
logging.getLogger("delivery.services").debug("checklist probe: app debug")
logging.getLogger("django.db.backends").info("checklist probe: sql info")
with connection.cursor() as cursor:
    cursor.execute("SELECT 'checklist probe: a query'")
print(json.dumps({
    "levels": {name: level(name) for name in
               ["", "django", "django.request", "django.db.backends", "celery", "delivery"]},
    "destinations": sorted(destinations),
    "debug": django.conf.settings.DEBUG,
}))
"""


def _run(env: dict[str, str]) -> tuple[dict, str]:
    result = run_python(_LOGGING_AS_CONFIGURED, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


@pytest.fixture
def test_database_url(django_db_setup) -> str:
    return database_url(connections["default"].settings_dict)


@pytest.mark.checklist("P6.1", "P6.2", "P6.3", "P6.4", "P6.5", "P6.6")
def test_production_logs_json_at_info_to_stdout_and_keeps_sql_at_warning(test_database_url):
    # when
    configured, output = _run(production_env(DATABASE_URL=test_database_url))

    # then every handler writes to stdout or stderr, never to a file
    assert set(configured["destinations"]) - {"NullHandler"} <= {"stdout", "stderr"}
    assert "stdout" in configured["destinations"]
    # and the levels are production's
    assert configured["levels"] == {
        "": "INFO",
        "django": "INFO",
        "django.request": "INFO",
        "django.db.backends": "WARNING",
        "celery": "INFO",
        "delivery": "INFO",
    }
    # and the records reached stdout as JSON objects, debug and SQL info left out
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    probes = {r["message"]: r for r in records if r["message"].startswith("checklist probe")}
    assert set(probes) == {"checklist probe: django", "checklist probe: celery"}, output
    django_record = probes["checklist probe: django"]
    assert {"time", "level", "logger", "request_id"} <= set(django_record)
    assert (django_record["level"], django_record["logger"]) == ("ERROR", "django.request")
    assert probes["checklist probe: celery"]["logger"] == "celery.worker"


@pytest.mark.checklist("P6.3", "P6.5")
def test_development_logs_debug_but_never_the_sql_of_each_query(test_database_url):
    # when development (DEBUG on, so Django would log every query at DEBUG) runs a query
    configured, output = _run(
        base_env(
            DJANGO_ENV="development", DATABASE_URL=test_database_url, REDIS_URL=settings.REDIS_URL
        )
    )

    # then the app logs at DEBUG, readable lines, but the query logger stays at WARNING
    assert configured["debug"] is True
    assert configured["levels"]["django"] == "DEBUG"
    assert configured["levels"]["delivery"] == "DEBUG"
    assert configured["levels"]["django.db.backends"] == "WARNING"
    assert "checklist probe: app debug" in output
    assert not any(line.startswith("{") for line in output.splitlines())
    assert "checklist probe: a query" not in output
    assert "checklist probe: sql info" not in output


@pytest.mark.checklist("P6.3", configured=True)
def test_log_level_comes_from_the_environment(test_database_url):
    configured, _ = _run(production_env(DATABASE_URL=test_database_url, LOG_LEVEL="warning"))

    assert configured["levels"][""] == "WARNING"
    assert configured["levels"]["django"] == "WARNING"
