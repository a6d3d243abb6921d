"""Reads the checklist document into its lines, each with its stable id."""

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCUMENT = HERE / "PRODUCTION_READINESS_CHECKLIST.md"
LINES = HERE / "lines.toml"

PHASE = re.compile(r"^## PHASE (\d+): (.+?)\s*✅?$")
SECTION = re.compile(r"^### (.+)$")
ITEM = re.compile(r"^- \[x\] (.+)$")
SUB_ITEM = re.compile(r"^  - (.+)$")


@dataclass(frozen=True)
class Line:
    id: str
    phase: int
    phase_title: str
    section: str
    text: str


def parse(document: str) -> list[Line]:
    """Every `- [x]` line, with its phase and section; the indented items under a line (the
    health check's list) are part of that line's text."""
    lines: list[Line] = []
    phase, phase_title, section, number = 0, "", "", 0
    for raw in document.splitlines():
        if match := PHASE.match(raw):
            phase, phase_title, section, number = int(match[1]), match[2].strip(), "", 0
        elif match := SECTION.match(raw):
            section = match[1].strip()
        elif (match := ITEM.match(raw)) and phase:
            number += 1
            lines.append(Line(f"P{phase}.{number}", phase, phase_title, section, match[1].strip()))
        elif (match := SUB_ITEM.match(raw)) and lines and phase:
            last = lines[-1]
            joint = " " if last.text.endswith(":") else "; "
            text = f"{last.text}{joint}{match[1].strip()}"
            lines[-1] = Line(last.id, last.phase, last.phase_title, last.section, text)
    return lines


def load() -> list[dict]:
    """lines.toml: each line's id, section and text, and optionally `documented` (files that
    carry it) and `out_of_reach` (why this repository cannot prove it)."""
    with LINES.open("rb") as file:
        return tomllib.load(file)["line"]


def ids() -> set[str]:
    return {line["id"] for line in load()}
