"""docs/checklist.md: every checklist line, its status and what stands behind it.

    .venv/bin/python -m checklist.report            # write docs/checklist.md (make checklist)
    .venv/bin/python -m checklist.report --check    # after the whole suite ran (make test)

A line's status is made of what stands behind it:
- proven by behaviour: tests carry its id (`@pytest.mark.checklist`) and make the behaviour
  happen;
- configured: the only tests that carry its id read back the setting or file that asks for it
  (`@pytest.mark.checklist(id, configured=True)`), the behaviour being a library's;
- checked live: `python manage.py readiness` checks it in a running deployment;
- documented only: neither, but lines.toml names the files that carry it (named beside the
  tests too, where there are some);
- out of reach: lines.toml says why this repository cannot prove it;
- not done: nothing.

`--check` fails when docs/checklist.md is not what the code says now (run `make checklist`),
when a line with tests had no passing test in the run that just ended, or when a line that
lines.toml says is proven by behaviour (`proof = "behaviour"`) had no passing behaviour test.
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

BEHAVIOUR, CONFIGURED, LIVE, DOCUMENTED, OUT_OF_REACH, NOT_DONE = (
    "proven by behaviour",
    "configured",
    "checked live",
    "documented only",
    "out of reach",
    "not done",
)
STATUSES = (BEHAVIOUR, CONFIGURED, LIVE, DOCUMENTED, OUT_OF_REACH, NOT_DONE)


def live_ids() -> set[str]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from readiness import live_ids as checked

    return set(checked())


def tests_by_id(marked: dict[str, dict]) -> dict[str, list[tuple[str, bool]]]:
    """{line id: [(test node id, whether it only proves the line configured)]}, from what the
    plugin recorded ({nodeid: {"ids": [...], "configured": [...]}})."""
    by_id: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for nodeid, found in sorted(marked.items()):
        for line_id in found["ids"]:
            by_id[line_id].append((nodeid, line_id in found.get("configured", [])))
    return by_id


def statuses(line: dict, tests: list[tuple[str, bool]], live: bool) -> list[str]:
    found = []
    if any(not configured for _, configured in tests):
        found.append(BEHAVIOUR)
    elif tests:
        found.append(CONFIGURED)
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


def render(lines: list[dict], by_id: dict[str, list[tuple[str, bool]]], live: set[str]) -> str:
    rows: list[tuple[dict, list[str]]] = [
        (line, statuses(line, by_id.get(line["id"], []), line["id"] in live)) for line in lines
    ]
    out = [
        "# The production-readiness checklist, line by line",
        "",
        "Written by `make checklist` (`checklist/report.py`); do not edit. Every checkbox line of",
        f"[the checklist](../checklist/{DOCUMENT.name}) under its id (`checklist/lines.toml`),",
        "what stands behind it, and its status:",
        "",
        "- **proven by behaviour**: the tests named carry `@pytest.mark.checklist(id)` and make",
        "  the behaviour happen (requests, real processes, broken dependencies); they would fail",
        "  if it broke;",
        "- **configured**: the only tests behind it read back the setting or file that asks for",
        "  it (marked `configured=True`, listed as *configured* below); the behaviour itself is",
        "  the library's or the platform's;",
        "- **checked live**: `python manage.py readiness` (and `/api/v1/ops/readiness/`) checks",
        "  it inside a running deployment;",
        "- **documented only**: no test or live check can prove it; the files named carry it;",
        "- **out of reach**: this repository cannot prove it, for the reason given;",
        "- **not done**: nothing stands behind it.",
        "",
        "`make test` fails when a line with tests had none pass, and when a line that",
        '`lines.toml` marks `proof = "behaviour"` had no behaviour test pass.',
        "",
        *summary(rows),
    ]
    phase = section = None
    for line, found in rows:
        if line["phase"] != phase:
            phase, section = line["phase"], None
            out += ["", f"## {phase_title(phase)}"]
        if line["section"] != section:
            section = line["section"]
            out += [
                "",
                f"### {section}",
                "",
                "| id | line | status | behind it |",
                "|---|---|---|---|",
            ]
        tests = by_id.get(line["id"], [])
        behind = [f"`{test}`" for test in grouped([t for t, configured in tests if not configured])]
        behind += [f"`{test}` (configured)" for test in grouped([t for t, c in tests if c])]
        if line["id"] in live:
            behind.append("`manage.py readiness`")
        # The files that carry the line, beside its tests: a test is often narrower.
        behind += [f"[{path}](../{path})" for path in line.get("documented", [])]
        for key, label in (("out_of_reach", "Out of reach"), ("note", "Note")):
            if line.get(key):
                behind.append(f"{label}: {line[key]}")
        out.append(
            f"| {line['id']} | {cell(line['text'])} | {', '.join(found)} | "
            f"{cell('<br>'.join(behind)) or '—'} |"
        )
    return "\n".join(out) + "\n"


def phase_title(phase: str) -> str:
    return phase.title() if phase.isupper() else phase


def summary(rows: list[tuple[dict, list[str]]]) -> list[str]:
    """A table of each phase's count per status, and the whole's."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line, found in rows:
        for phase in (line["phase"], "All"):
            counts[phase]["lines"] += 1
            for status in found:
                counts[phase][status] += 1
    counts["All"] = counts.pop("All")  # last
    out = [
        "A line can be both proven (or configured) and checked live.",
        "",
        "| phase | lines | " + " | ".join(STATUSES) + " |",
        "|---|" + "---:|" * (len(STATUSES) + 1),
    ]
    for phase, count in counts.items():
        name = f"**{phase}**" if phase == "All" else phase_title(phase)
        cells = [str(count["lines"])] + [str(count[status]) for status in STATUSES]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def read(name: str) -> dict:
    path = OUT / name
    if not path.exists():
        sys.exit(f"{path} is missing: run `make checklist` (or the whole suite, `make test`)")
    return json.loads(path.read_text())


def check(lines: list[dict], live: set[str]) -> list[str]:
    """What is wrong with docs/checklist.md after the whole suite ran."""
    results = read("results.json")
    by_id = tests_by_id(results)
    problems = []
    if not REPORT.exists() or REPORT.read_text() != render(lines, by_id, live):
        problems.append(f"{REPORT.relative_to(ROOT)} is out of date: run `make checklist`")
    for line_id, tests in sorted(by_id.items()):
        passed = [t for t, _ in tests if results[t]["outcome"] == "passed"]
        if not passed:
            outcomes = ", ".join(f"{t}: {results[t]['outcome']}" for t, _ in tests)
            problems.append(f"{line_id} has tests, but none passed ({outcomes})")
    for line in lines:
        if line.get("proof") != "behaviour":
            continue
        tests = by_id.get(line["id"], [])
        if not any(not c and results[t]["outcome"] == "passed" for t, c in tests):
            problems.append(
                f"{line['id']} is to be proven by behaviour (lines.toml), but no behaviour test "
                f"of it passed ({len(tests)} configured or failed)"
            )
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
