"""The user's production-readiness checklist, line by line, and what proves each line.

`lines.toml` holds every checkbox line of `PRODUCTION_READINESS_CHECKLIST.md` (a copy of the
user's document) under a stable id, P<phase>.<n>, numbered in the document's order within its
phase. Tests name the lines they prove with `@pytest.mark.checklist("P5.4")`; the live report
(`python manage.py readiness`) names the lines it checks; `lines.toml` names the documents
behind lines that can only be documented, and why a line is out of this repository's reach.
`make checklist` puts it all together in docs/checklist.md.
"""
