"""`@pytest.mark.checklist("P5.4", ...)`: the checklist lines a test proves.

By default the test proves the behaviour the line names: it makes it happen and would fail if
it broke. `@pytest.mark.checklist("P3.5", configured=True)` says the test only reads back the
setting or the file that asks for it, the behaviour being a library's or the platform's. A test
can carry both kinds of marker; for an id named in both, behaviour wins.

Loaded by the root conftest. Collection fails on an id that is not in lines.toml. When
CHECKLIST_RECORD names a directory (`make checklist` and the whole-suite run of `make test` set
it), the tests carrying the marker, and how each one ended, are written there:
`collected.json` after collection ({nodeid: {"ids": [...], "configured": [...]}}, the second
list being the ids it only proves configured), `results.json` after the run (the same, with
each test's "outcome"), for `python -m checklist.report` to read. Other runs (a developer's
few tests) leave them alone.
"""

import json
import os
from pathlib import Path

import pytest

from checklist.spec import ids

_outcomes: dict[str, str] = {}


def record_dir() -> Path | None:
    path = os.environ.get("CHECKLIST_RECORD", "")
    return Path(path) if path else None


def marked_ids(item) -> list[str]:
    found: list[str] = []
    for mark in item.iter_markers("checklist"):
        found += [i for i in mark.args if i not in found]
    return found


def configured_only(item) -> list[str]:
    """The ids this test names only in `configured=True` markers."""
    configured, behaviour = set(), set()
    for mark in item.iter_markers("checklist"):
        unknown = set(mark.kwargs) - {"configured"}
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: checklist takes only configured=True")
        (configured if mark.kwargs.get("configured") else behaviour).update(mark.args)
    return [i for i in marked_ids(item) if i in configured - behaviour]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "checklist(*ids, configured=False): the checklist lines (checklist/lines.toml) this "
        "test proves; configured=True when it only reads back the setting or file",
    )


def pytest_collection_modifyitems(session, config, items):
    known = ids()
    collected: dict[str, dict[str, list[str]]] = {}
    for item in items:
        line_ids = marked_ids(item)
        if not line_ids:
            continue
        if not all(isinstance(i, str) for i in line_ids):
            raise pytest.UsageError(f"{item.nodeid}: checklist ids are strings, like 'P5.4'")
        unknown = sorted(set(line_ids) - known)
        if unknown:
            raise pytest.UsageError(
                f"{item.nodeid}: no such checklist line {', '.join(unknown)} "
                "(ids are in checklist/lines.toml)"
            )
        collected[item.nodeid] = {"ids": line_ids, "configured": configured_only(item)}
    session.config._checklist_collected = collected
    if out := record_dir():
        out.mkdir(parents=True, exist_ok=True)
        (out / "collected.json").write_text(json.dumps(collected, indent=1, sort_keys=True))


def pytest_runtest_logreport(report):
    # a test passes when its setup, call and teardown all passed
    previous = _outcomes.get(report.nodeid)
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped and previous != "failed":
        _outcomes[report.nodeid] = "skipped"
    elif report.when == "call" and report.passed and previous is None:
        _outcomes[report.nodeid] = "passed"


def pytest_sessionfinish(session):
    collected = getattr(session.config, "_checklist_collected", None)
    out = record_dir()
    if collected is None or out is None or session.config.option.collectonly:
        return
    results = {
        nodeid: {**marked, "outcome": _outcomes.get(nodeid, "not run")}
        for nodeid, marked in collected.items()
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
