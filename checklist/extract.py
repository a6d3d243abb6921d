"""Writes lines.toml from the checklist document, keeping what was added to each line by hand.

    .venv/bin/python -m checklist.extract [path/to/PRODUCTION_READINESS_CHECKLIST.md]

Ids are positions in the document, so they stay stable as long as the document's lines are
not reordered; a line whose text changed keeps its id and its notes, and the test
checklist/tests/test_lines.py fails until lines.toml is written again.
"""

import json
import shutil
import sys
from pathlib import Path

from checklist.spec import DOCUMENT, LINES, parse

NOTES = ("documented", "out_of_reach", "note", "proof")


def render(lines, notes: dict[str, dict]) -> str:
    out = [
        "# Every checkbox line of PRODUCTION_READINESS_CHECKLIST.md, with its stable id.",
        "# Written by `python -m checklist.extract`. Added by hand, and kept when it is run again:",
        "# `documented` (the files that carry a line no test or live check can prove),",
        "# `out_of_reach` (why this repository cannot prove a line), `note` (where the code",
        '# deliberately differs from the line\'s wording, and why) and `proof = "behaviour"` (make',
        "# test fails unless a test proving the line by behaviour passes). Tests name the lines",
        "# they prove with @pytest.mark.checklist(id); the live report (readiness/) names its",
        "# own.",
    ]
    for line in lines:
        out += ["", "[[line]]", f'id = "{line.id}"']
        out.append(f"phase = {json.dumps(f'{line.phase}. {line.phase_title}', ensure_ascii=False)}")
        out.append(f"section = {json.dumps(line.section, ensure_ascii=False)}")
        out.append(f"text = {json.dumps(line.text, ensure_ascii=False)}")
        for key in NOTES:
            if key in notes.get(line.id, {}):
                out.append(f"{key} = {json.dumps(notes[line.id][key], ensure_ascii=False)}")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DOCUMENT
    if source.resolve() != DOCUMENT:
        shutil.copyfile(source, DOCUMENT)
    notes: dict[str, dict] = {}
    if LINES.exists():
        from checklist.spec import load

        notes = {line["id"]: line for line in load()}
    LINES.write_text(render(parse(DOCUMENT.read_text()), notes))
    print(f"wrote {LINES}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
