"""Every refusal the API gives is a member of one app's ErrorCode enum (`<app>/errors.py`, or
core's CommonError), raised as ApiError: read from the source, so a new ApiError subclass or an
enum outside its room fails here. A code means one thing to a client: one status everywhere.
"""

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

from core.exceptions import ApiError, CommonError, ErrorCode, api_exception_handler

ROOT = Path(__file__).resolve().parents[2]
APPS = ["core", "accounts", "orders", "riders", "payments", "delivery", "ops", "readiness"]
# Classes of their own because a caller tells them apart by type: Celery retries Razorpay being
# down (autoretry_for), and a refund tells Razorpay refusing from Razorpay being down.
SUBCLASSES_ALLOWED = {"payments/razorpay.py": {"RazorpayUnavailable", "RazorpayRejected"}}


def app_sources():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if not {"tests", "migrations"} & set(path.parts):
                yield path


def classes_based_on(path: Path, bases: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(getattr(base, "id", getattr(base, "attr", None)) in bases for base in node.bases)
    }


def test_refusals_are_codes_not_subclasses():
    found = {}
    for path in app_sources():
        name = path.relative_to(ROOT).as_posix()
        extra = classes_based_on(path, {"ApiError"}) - SUBCLASSES_ALLOWED.get(name, set())
        if extra:
            found[name] = extra
    assert not found, f"ApiError subclasses; add a member to the app's errors.py instead: {found}"


def test_each_app_keeps_its_codes_in_its_errors_module():
    misplaced = {}
    for path in app_sources():
        name = path.relative_to(ROOT).as_posix()
        enums = classes_based_on(path, {"ErrorCode"})
        allowed = {"CommonError"} if name == "core/exceptions.py" else set()
        if path.name == "errors.py" and path.parent.parent == ROOT:
            allowed = enums
        if enums - allowed:
            misplaced[name] = enums - allowed
    assert not misplaced, f"ErrorCode enums outside <app>/errors.py: {misplaced}"


def all_codes() -> list[ErrorCode]:
    members = list(CommonError)
    for app in APPS:
        if (ROOT / app / "errors.py").exists():
            module = importlib.import_module(f"{app}.errors")
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, ErrorCode)
                    and value is not ErrorCode
                ):
                    members.extend(value)
    return members


def test_a_code_has_one_status_wherever_it_is_defined():
    statuses = defaultdict(set)
    for member in all_codes():
        statuses[member.code].add(member.status_code)
    assert len(all_codes()) > 50
    assert {code: found for code, found in statuses.items() if len(found) > 1} == {
        # the one exception, kept from before the enums: a refresh token that is not valid
        # ends the session (401) on refresh, but only fails the request (400) on logout
        "token_not_valid": {400, 401},
    }


@pytest.mark.parametrize("member", all_codes(), ids=lambda member: f"{member!r}")
def test_every_code_renders_in_the_one_error_shape(member):
    response = api_exception_handler(ApiError(member, fields={"x": ["y"]}), {})
    assert response.status_code == member.status_code
    assert response.data == {
        "error": {"code": member.code, "message": member.message, "fields": {"x": ["y"]}}
    }
    assert ("Retry-After" in response) == (member.status_code == 503)
