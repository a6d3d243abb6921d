"""The OpenAPI schema the apps generate their clients from changes only on purpose: it is kept
in docs/api/openapi.yaml, and a change of the code that changes it fails here until that file
is written again (UPDATE_API_SCHEMA=1 with this test) and the diff read in review."""

import os
from pathlib import Path

from django.core.management import call_command

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "api" / "openapi.yaml"


def test_the_schema_is_the_one_in_docs(tmp_path):
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")
    if os.environ.get("UPDATE_API_SCHEMA") == "1":
        SCHEMA.write_text(generated.read_text())
    assert generated.read_text() == SCHEMA.read_text(), (
        "the API schema changed: if on purpose, run this test with UPDATE_API_SCHEMA=1 and "
        "commit docs/api/openapi.yaml"
    )
