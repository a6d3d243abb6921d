"""Results, outcomes and the registry of checks, filled as the check modules are imported."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.readiness.runner import Context


PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class Result:
    """One checklist line: PASS, FAIL or SKIP, and what was found."""

    id: str
    status: str
    detail: str


@dataclass(frozen=True)
class Outcome:
    status: str
    detail: str


def passed(detail: str) -> Outcome:
    return Outcome(PASS, detail)


def failed(detail: str) -> Outcome:
    return Outcome(FAIL, detail)


def judged(problems: list[str], fine: str) -> Outcome:
    """A FAIL naming every problem found, or a PASS saying what was found."""
    return failed("; ".join(problems)) if problems else passed(fine)


class NotHere(Exception):
    """Raised by a check that cannot run in this deployment: the line is SKIPped, with why."""


class Unreachable(Exception):
    """A service of the deployment did not answer."""


@dataclass(frozen=True)
class Check:
    name: str
    ids: tuple[str, ...]
    func: Callable[["Context"], Outcome]


CHECKS: list[Check] = []


def check(*ids: str, name: str | None = None):
    """Registers a check of the checklist lines `ids`; it takes the run's Context."""

    def register(func):
        check_name = name or func.__name__
        if any(existing.name == check_name for existing in CHECKS):
            raise ValueError(f"two readiness checks are called {check_name}")
        CHECKS.append(Check(check_name, ids, func))
        return func

    return register


def live_ids() -> set[str]:
    """Every checklist id some check covers. Imports nothing and touches no network."""
    return {line_id for item in CHECKS for line_id in item.ids}
