"""docs/checklist.md: every checklist line, its status and what stands behind it.

    .venv/bin/python -m checklist.report            # write docs/checklist.md (make checklist)
    .venv/bin/python -m checklist.report --check    # after the whole suite ran (make test)

A line's status is made of what stands behind it:
- proven by tests: tests carry its id (`@pytest.mark.checklist`);
- checked live: `python manage.py readiness` checks it in a running deployment;
- documented only: neither, but lines.toml names the files that carry it;
- out of reach: lines.toml says why this repository cannot prove it;
- not done: nothing.

`--check` fails when docs/checklist.md is not what the code says now (run `make checklist`),
or when a line it calls proven had no passing test in the run that just ended.
"""

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

from checklist.spec import DOCUMENT, load

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "checklist.md"
# Where `make checklist` and `make test` have the pytest plugin record (CHECKLIST_RECORD).
OUT = Path(os.environ.get("CHECKLIST_RECORD") or ROOT / ".local" / "checklist")

PROVEN, LIVE, DOCUMENTED, OUT_OF_REACH, NOT_DONE = (
    "proven by tests",
    "checked live",
    "documented only",
    "out of reach",
    "not done",
)


def live_ids() -> set[str]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from core.readiness import live_ids as checked

    return set(checked())


def tests_by_id(marked: dict[str, list[str]]) -> dict[str, list[str]]:
    by_id: dict[str, list[str]] = defaultdict(list)
    for nodeid, line_ids in sorted(marked.items()):
        for line_id in line_ids:
            by_id[line_id].append(nodeid)
    return by_id


def statuses(line: dict, tests: list[str], live: bool) -> list[str]:
    found = [PROVEN] if tests else []
    if live:
        found.append(LIVE)
    if not found and line.get("documented"):
        found.append(DOCUMENTED)
    if line.get("out_of_reach"):
        found.append(OUT_OF_REACH)
    return found or [NOT_DONE]


def grouped(tests: list[str]) -> list[str]:
    """`t.py::test_x[a]` and `t.py::test_x[b]` as one `t.py::test_x[a, b]`."""
    cases: dict[str, list[str]] = {}
    for test in tests:
        base, _, case = test.partition("[")
        cases.setdefault(base, [])
        if case:
            cases[base].append(case.removesuffix("]"))
    return [f"{base}[{', '.join(found)}]" if found else base for base, found in cases.items()]


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(lines: list[dict], by_id: dict[str, list[str]], live: set[str]) -> str:
    rows: list[tuple[dict, list[str]]] = [
        (line, statuses(line, by_id.get(line["id"], []), line["id"] in live)) for line in lines
    ]
    count = defaultdict(int)
    for _, found in rows:
        for status in found:
            count[status] += 1
    out = [
        "# The production-readiness checklist, line by line",
        "",
        "Written by `make checklist` (`checklist/report.py`); do not edit. Every checkbox line of",
        f"[the checklist](../checklist/{DOCUMENT.name}) under its id (`checklist/lines.toml`),",
        "what stands behind it, and its status:",
        "",
        "- **proven by tests**: the tests named carry `@pytest.mark.checklist(id)`; `make test`",
        "  fails when such a line has no passing test;",
        "- **checked live**: `python manage.py readiness` (and `/api/v1/ops/readiness/`) checks",
        "  it inside a running deployment;",
        "- **documented only**: no test or live check can prove it; the files named carry it;",
        "- **out of reach**: this repository cannot prove it, for the reason given;",
        "- **not done**: nothing stands behind it.",
        "",
        f"{len(lines)} lines: "
        + ", ".join(
            f"{count[status]} {status}"
            for status in (PROVEN, LIVE, DOCUMENTED, OUT_OF_REACH, NOT_DONE)
        )
        + " (a line can be both proven by tests and checked live).",
    ]
    phase = section = None
    for line, found in rows:
        if line["phase"] != phase:
            phase, section = line["phase"], None
            out += ["", f"## {phase.title() if phase.isupper() else phase}"]
        if line["section"] != section:
            section = line["section"]
            out += [
                "",
                f"### {section}",
                "",
                "| id | line | status | behind it |",
                "|---|---|---|---|",
            ]
        behind = [f"`{test}`" for test in grouped(by_id.get(line["id"], []))]
        if line["id"] in live:
            behind.append("`manage.py readiness`")
        if line.get("documented") and PROVEN not in found:
            behind += [f"[{path}](../{path})" for path in line["documented"]]
        for key, label in (("out_of_reach", "Out of reach"), ("note", "Note")):
            if line.get(key):
                behind.append(f"{label}: {line[key]}")
        out.append(
            f"| {line['id']} | {cell(line['text'])} | {', '.join(found)} | "
            f"{cell('<br>'.join(behind)) or '—'} |"
        )
    return "\n".join(out) + "\n"


def read(name: str) -> dict:
    path = OUT / name
    if not path.exists():
        sys.exit(f"{path} is missing: run `make checklist` (or the whole suite, `make test`)")
    return json.loads(path.read_text())


def check(lines: list[dict], live: set[str]) -> list[str]:
    """What is wrong with docs/checklist.md after the whole suite ran."""
    results = read("results.json")
    marked = {nodeid: result["ids"] for nodeid, result in results.items()}
    by_id = tests_by_id(marked)
    problems = []
    if not REPORT.exists() or REPORT.read_text() != render(lines, by_id, live):
        problems.append(f"{REPORT.relative_to(ROOT)} is out of date: run `make checklist`")
    for line_id, tests in sorted(by_id.items()):
        passed = [t for t in tests if results[t]["outcome"] == "passed"]
        if not passed:
            outcomes = ", ".join(f"{t}: {results[t]['outcome']}" for t in tests)
            problems.append(f"{line_id} is proven by tests, but none passed ({outcomes})")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check after the whole suite ran")
    options = parser.parse_args(argv)
    lines, live = load(), live_ids()
    if options.check:
        problems = check(lines, live)
        for problem in problems:
            print(f"checklist: {problem}", file=sys.stderr)
        if not problems:
            print(f"checklist: {REPORT.relative_to(ROOT)} is current; every proven line passed")
        return 1 if problems else 0
    REPORT.write_text(render(lines, tests_by_id(read("collected.json")), live))
    print(f"wrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
