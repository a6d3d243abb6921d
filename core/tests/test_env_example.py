"""`.env.example` documents every environment variable the code reads, each with a comment."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# env.str("NAME"...), env.bool("NAME"...), os.environ.get("NAME"...), _int_env("NAME"...), ...
READ_PATTERNS = [
    re.compile(r"""\benv\.(?:str|bool|int|float|list)\(\s*["']([A-Z][A-Z0-9_]+)["']"""),
    re.compile(r"""os\.environ(?:\.get|\.setdefault)?\(\s*["']([A-Z][A-Z0-9_]+)["']"""),
    re.compile(r"""os\.environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]"""),
    re.compile(r"""_int_env\(\s*["']([A-Z][A-Z0-9_]+)["']"""),
    re.compile(r"""_rupees_to_paise\(\s*["']([A-Z][A-Z0-9_]+)["']"""),
]
# Set by tools, not by whoever deploys: Django's own settings pointer.
NOT_CONFIGURATION = {"DJANGO_SETTINGS_MODULE"}


def _variables_read_by_code() -> set[str]:
    sources = [ROOT / "gunicorn_conf.py", *ROOT.glob("config/*.py")]
    # Test code and the proof suite (whose knobs, like LOAD_SECONDS, are not the service's).
    sources += [p for p in ROOT.glob("*/*.py") if not {"tests", "proof"} & set(p.parts)]
    names = set()
    for source in sources:
        text = source.read_text()
        for pattern in READ_PATTERNS:
            names.update(pattern.findall(text))
    return names - NOT_CONFIGURATION


def _documented() -> dict[str, str]:
    """Variable -> the comment line just above it in .env.example."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {}
    for index, line in enumerate(lines):
        match = re.match(r"^#?\s?([A-Z][A-Z0-9_]+)=", line)
        if match:
            above = [prev for prev in lines[:index] if prev.startswith("# ") and "=" not in prev]
            documented[match.group(1)] = above[-1] if above else ""
    return documented


@pytest.mark.checklist("P12.1")
def test_every_variable_read_by_the_code_is_in_env_example():
    read = _variables_read_by_code()
    assert len(read) > 20, "the scan found too few variables; is the pattern still right?"
    missing = sorted(read - set(_documented()))
    assert not missing, f".env.example lacks: {', '.join(missing)}"


@pytest.mark.checklist("P12.1")
def test_every_documented_variable_has_a_comment():
    undocumented = sorted(name for name, comment in _documented().items() if not comment)
    assert not undocumented, f"no comment above: {', '.join(undocumented)}"


def test_env_example_holds_no_secret_values():
    text = (ROOT / ".env.example").read_text()
    for name in ("DJANGO_SECRET_KEY", "DEMO_STAFF_PASSWORD", "RAZORPAY_KEY_SECRET", "SENTRY_DSN"):
        assert re.search(rf"^#?\s?{name}=\s*$", text, re.MULTILINE), f"{name} must be empty"
