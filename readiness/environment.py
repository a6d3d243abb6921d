"""Checks of settings and environment (phases 1, 7, 10, 11)."""

import os

from django.conf import settings

from readiness.registry import Outcome, check, failed, judged, passed
from readiness.runner import Context
from readiness.shared import FOREIGN_ORIGIN


@check("P7.1")
def production_mode(context: Context) -> Outcome:
    if settings.DJANGO_ENV != "production":
        return failed(f"DJANGO_ENV={settings.DJANGO_ENV}: not production")
    return passed("DJANGO_ENV=production")


@check("P1.1", "P7.2", "P11.14")
def debug_off(context: Context) -> Outcome:
    if settings.DEBUG:
        return failed("DEBUG is on: error pages show code, settings and SQL to anyone")
    return passed(f"DEBUG is off (DJANGO_ENV={settings.DJANGO_ENV})")


@check("P1.2", "P7.3", "P10.2")
def secret_key(context: Context) -> Outcome:
    key = settings.SECRET_KEY or ""
    problems = []
    if not key:
        problems.append("SECRET_KEY is empty")
    elif os.environ.get("DJANGO_SECRET_KEY") != key:
        problems.append(
            "SECRET_KEY does not come from DJANGO_SECRET_KEY (a random key per process: "
            "sessions and tokens break across processes and restarts)"
        )
    if key and (len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure")):
        problems.append(f"SECRET_KEY is weak ({len(key)} characters, or a known default)")
    return judged(problems, f"set from DJANGO_SECRET_KEY, {len(key)} characters, not a default")


@check("P1.3", "P7.4")
def allowed_hosts(context: Context) -> Outcome:
    hosts = settings.ALLOWED_HOSTS
    if not hosts:
        return failed("ALLOWED_HOSTS is empty")
    if "*" in hosts:
        return failed("ALLOWED_HOSTS contains '*'")
    return passed(f"ALLOWED_HOSTS={','.join(hosts)}")


@check("P1.4", "P7.7", "P10.14")
def cors_settings(context: Context) -> Outcome:
    origins = settings.CORS_ALLOWED_ORIGINS
    problems = []
    if not origins:
        problems.append("CORS_ALLOWED_ORIGINS is empty")
    if "*" in origins or getattr(settings, "CORS_ALLOW_ALL_ORIGINS", False):
        problems.append("CORS allows every origin")
    if getattr(settings, "CORS_ALLOWED_ORIGIN_REGEXES", None):
        problems.append("CORS_ALLOWED_ORIGIN_REGEXES is set")
    return judged(problems, f"CORS_ALLOWED_ORIGINS={','.join(origins)}")


@check("P1.4", "P10.14")
def cors_live(context: Context) -> Outcome:
    foreign = context.request("GET", "/api/config/", headers={"Origin": FOREIGN_ORIGIN})
    problems = []
    if foreign.header("Access-Control-Allow-Origin"):
        problems.append(f"{foreign.label} allowed the foreign origin {FOREIGN_ORIGIN}")
    allowed = [origin for origin in settings.CORS_ALLOWED_ORIGINS if origin != "*"]
    if allowed:
        answer = context.request("GET", "/api/config/", headers={"Origin": allowed[0]})
        if answer.header("Access-Control-Allow-Origin") != allowed[0]:
            problems.append(f"{answer.label} did not allow the configured origin {allowed[0]}")
    return judged(problems, "a foreign origin gets no Access-Control-Allow-Origin; ours does")


@check("P11.15")
def required_variables(context: Context) -> Outcome:
    names = ["DJANGO_ENV", "DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "CORS_ALLOWED_ORIGINS"]
    names.append("REDIS_URL")
    missing = [name for name in names if not os.environ.get(name, "").strip()]
    if not os.environ.get("DATABASE_URL") and not (
        os.environ.get("POSTGRES_DB") and os.environ.get("POSTGRES_HOST")
    ):
        missing.append("DATABASE_URL (or POSTGRES_DB and POSTGRES_HOST)")
    if missing:
        return failed(f"not set: {', '.join(missing)}")
    return passed("DJANGO_ENV, DJANGO_SECRET_KEY, ALLOWED_HOSTS, CORS, database and Redis set")
