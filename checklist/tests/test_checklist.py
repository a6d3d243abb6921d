"""The checklist's ids, the marker that ties tests to them, and the report's verdicts."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from checklist import report
from checklist.spec import DOCUMENT, load, parse

ROOT = Path(__file__).resolve().parents[2]


def test_lines_toml_holds_every_line_of_the_document_under_its_id():
    parsed = parse(DOCUMENT.read_text())
    kept = load()
    assert len(parsed) == 248
    assert [(line.id, line.section, line.text) for line in parsed] == [
        (line["id"], line["section"], line["text"]) for line in kept
    ], "the document changed: run `python -m checklist.extract` and review the ids"
    assert [line.id for line in parsed if line.phase == 5][:2] == ["P5.1", "P5.2"]


def test_the_health_checks_list_is_part_of_its_line():
    health = next(line for line in load() if line["text"].startswith("Health check verifies"))
    assert "PostgreSQL database connectivity" in health["text"]
    assert "Celery beat heartbeat" in health["text"]


def test_every_note_is_one_the_report_knows():
    allowed = {"id", "phase", "section", "text", "documented", "out_of_reach", "note", "proof"}
    for line in load():
        assert set(line) <= allowed, line["id"]
        assert line.get("proof", "behaviour") == "behaviour", line["id"]
        for path in line.get("documented", []):
            file, _, anchor = path.partition("#")
            assert (ROOT / file).exists(), f"{line['id']}: {file} does not exist"
            if anchor:
                assert anchor in heading_anchors(ROOT / file), f"{line['id']}: no heading {path}"


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def run_pytest(tmp_path: Path, body: str, **env_changes: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_marked.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CHECKLIST_RECORD", None)  # set when the whole suite runs under make test
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "checklist.pytest_plugin", "-p", "no:django",
         "-p", "no:cacheprovider", "-q", str(tmp_path / "test_marked.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("marker", "refusal"),
    [
        ('"P99.1"', "no such checklist line P99.1"),
        ('"P1.1", config=True', "checklist takes only configured=True"),
    ],
    ids=["unknown-id", "unknown-keyword"],
)
def test_a_bad_marker_fails_collection(tmp_path, marker, refusal):
    body = f"import pytest\n\n@pytest.mark.checklist({marker})\ndef test_x():\n    pass\n"
    result = run_pytest(tmp_path, body)
    assert result.returncode != 0
    assert refusal in result.stdout + result.stderr


def test_the_run_records_each_marked_test_and_how_it_ended(tmp_path, monkeypatch):
    out = tmp_path / "out"
    body = (
        "import pytest\n\n"
        "pytestmark = pytest.mark.checklist('P1.1')\n\n"
        "@pytest.mark.checklist('P6.9', 'P1.1')\n"
        "@pytest.mark.checklist('P3.2', 'P6.9', configured=True)\ndef test_passes():\n    pass\n\n"
        "def test_fails():\n    assert False\n\n"
        "@pytest.mark.skip(reason='no')\ndef test_skipped():\n    pass\n\n"
        "def test_unmarked_module_mark_still_counts():\n    pass\n"
    )
    result = run_pytest(tmp_path, body, CHECKLIST_RECORD=str(out))
    assert result.returncode == 1, result.stdout
    results = json.loads((out / "results.json").read_text())
    outcomes = {nodeid.split("::")[1]: r["outcome"] for nodeid, r in results.items()}
    assert outcomes == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_skipped": "skipped",
        "test_unmarked_module_mark_still_counts": "passed",
    }
    assert set(json.loads((out / "collected.json").read_text())) == set(results)
    passes = next(r for nodeid, r in results.items() if nodeid.endswith("test_passes"))
    assert passes["ids"] == ["P3.2", "P6.9", "P1.1"]  # the nearest marker first
    assert passes["configured"] == ["P3.2"]  # P6.9 is proven by behaviour too


def test_a_run_without_checklist_record_writes_nothing(tmp_path):
    body = "import pytest\n\n@pytest.mark.checklist('P1.1')\ndef test_passes():\n    pass\n"
    result = run_pytest(tmp_path, body)
    assert result.returncode == 0, result.stdout
    assert not list(tmp_path.rglob("*.json"))


LINES_FOR_REPORT = [
    {"id": "P1.1", "phase": "1. SECURITY", "section": "S", "text": "a | b"},
    {"id": "P1.2", "phase": "1. SECURITY", "section": "S", "text": "live only"},
    {
        "id": "P1.3",
        "phase": "1. SECURITY",
        "section": "S",
        "text": "doc",
        "documented": ["README.md"],
    },
    {"id": "P1.4", "phase": "1. SECURITY", "section": "T", "text": "far", "out_of_reach": "no AWS"},
    {"id": "P1.5", "phase": "1. SECURITY", "section": "T", "text": "nothing"},
]


def test_the_report_gives_each_line_what_stands_behind_it():
    tests = [("a/test_x.py::test_y", False), ("a/test_x.py::test_z[one]", False),
             ("a/test_x.py::test_z[two]", False), ("a/test_c.py::test_reads", True)]  # fmt: skip
    by_id = {"P1.1": tests, "P1.2": [("a/test_c.py::test_reads", True)]}
    text = report.render(LINES_FOR_REPORT, by_id, {"P1.1", "P1.2"})
    rows = {row.split(" | ")[0][2:]: row for row in text.splitlines() if row.startswith("| P")}
    assert "| proven by behaviour, checked live |" in rows["P1.1"]
    assert (
        "`a/test_x.py::test_y`<br>`a/test_x.py::test_z[one, two]`<br>"
        "`a/test_c.py::test_reads` (configured)"
    ) in rows["P1.1"]
    assert "a \\| b" in rows["P1.1"]
    assert "| configured, checked live |" in rows["P1.2"]
    assert "| documented only | [README.md](../README.md) |" in rows["P1.3"]
    assert "| out of reach | Out of reach: no AWS |" in rows["P1.4"]
    assert "| not done | — |" in rows["P1.5"]
    # the summary, per phase and in all
    assert "| 1. Security | 5 | 1 | 1 | 2 | 1 | 1 | 1 |" in text
    assert "| **All** | 5 | 1 | 1 | 2 | 1 | 1 | 1 |" in text


@pytest.fixture
def last_run(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "OUT", tmp_path)
    monkeypatch.setattr(report, "REPORT", tmp_path / "checklist.md")
    monkeypatch.setattr(report, "ROOT", tmp_path)

    def write(results: dict, lines: list[dict] = LINES_FOR_REPORT) -> None:
        (tmp_path / "results.json").write_text(json.dumps(results))
        by_id = report.tests_by_id(results)
        (tmp_path / "checklist.md").write_text(report.render(lines, by_id, set()))

    return write


def test_check_passes_when_every_proven_line_had_a_passing_test(last_run):
    last_run({"t::a": {"ids": ["P1.1"], "outcome": "passed"},
              "t::b": {"ids": ["P1.1"], "outcome": "failed"}})  # fmt: skip
    assert report.check(LINES_FOR_REPORT, set()) == []


def test_check_fails_when_a_proven_line_has_no_passing_test(last_run):
    last_run({"t::a": {"ids": ["P1.1", "P1.3"], "outcome": "skipped"},
              "t::b": {"ids": ["P1.3"], "outcome": "passed"}})  # fmt: skip
    assert report.check(LINES_FOR_REPORT, set()) == [
        "P1.1 has tests, but none passed (t::a: skipped)"
    ]


def test_check_fails_when_a_behaviour_line_has_only_configured_tests(last_run):
    lines = [{**LINES_FOR_REPORT[0], "proof": "behaviour"}, *LINES_FOR_REPORT[1:]]
    results = {"t::a": {"ids": ["P1.1"], "configured": ["P1.1"], "outcome": "passed"}}
    last_run(results, lines)
    assert report.check(lines, set()) == [
        "P1.1 is to be proven by behaviour (lines.toml), but no behaviour test of it passed "
        "(1 configured or failed)"
    ]

    # and passes once a behaviour test of it passed
    results["t::b"] = {"ids": ["P1.1"], "configured": [], "outcome": "passed"}
    last_run(results, lines)
    assert report.check(lines, set()) == []


def test_check_fails_when_the_document_is_out_of_date(last_run):
    last_run({"t::a": {"ids": ["P1.1"], "outcome": "passed"}})
    problems = report.check(LINES_FOR_REPORT, {"P1.2"})  # a live check added since
    assert problems == ["checklist.md is out of date: run `make checklist`"]


def test_a_proven_line_keeps_the_files_that_carry_it_beside_its_tests():
    line = {
        "id": "P0.1",
        "phase": "0. TEST",
        "section": "Links",
        "text": "A line",
        "documented": ["docs/deploy.md"],
    }

    text = report.render([line], {"P0.1": [("core/tests/test_x.py::test_y", False)]}, live=set())

    row = next(row for row in text.splitlines() if row.startswith("| P0.1 |"))
    assert "`core/tests/test_x.py::test_y`" in row
    assert "[docs/deploy.md](../docs/deploy.md)" in row
    assert "proven by behaviour" in row and "documented only" not in row
