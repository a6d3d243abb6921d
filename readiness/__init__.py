"""The live readiness report: the checklist lines a running deployment can be checked against.

`python manage.py readiness` and GET /api/v1/ops/readiness/ run it. The tests prove what the
code does; this report checks what one deployment *is*: its settings and environment, the
headers and cookies its own web server answers with, PostgreSQL/PostGIS, Redis, the Celery
workers and beat, Sentry, and, inside this project's image, the image's user and directories.

Each check names the checklist lines (checklist/lines.toml) it checks; readiness.checks lists
the modules whose checks run, in the order a line's details are joined. A line FAILs when one of
its checks failed, PASSes when the others passed, and is SKIPped when none could run here. A
run never raises (a check that raises is a FAIL naming the error), every network call has a
timeout of a few seconds and the whole run is bounded (RUN_TIMEOUT_SECONDS), and no secret
reaches the report: URLs lose their credentials and known secret values are masked.
"""

from readiness.checks import CHECKS, live_ids
from readiness.masking import describe, scrub
from readiness.registry import (
    FAIL,
    PASS,
    SKIP,
    Check,
    NotHere,
    Outcome,
    Result,
    Unreachable,
    check,
    failed,
    judged,
    passed,
)
from readiness.runner import (
    HTTP_TIMEOUT_SECONDS,
    RUN_TIMEOUT_SECONDS,
    Answer,
    Context,
    default_base_url,
    line_texts,
    report,
    run,
)

__all__ = [
    "CHECKS",
    "FAIL",
    "HTTP_TIMEOUT_SECONDS",
    "PASS",
    "RUN_TIMEOUT_SECONDS",
    "SKIP",
    "Answer",
    "Check",
    "Context",
    "NotHere",
    "Outcome",
    "Result",
    "Unreachable",
    "check",
    "default_base_url",
    "describe",
    "failed",
    "judged",
    "line_texts",
    "live_ids",
    "passed",
    "report",
    "run",
    "scrub",
]
