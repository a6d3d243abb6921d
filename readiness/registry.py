"""Results, outcomes, and the mark a check function carries (readiness.checks lists them)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from readiness.runner import Context


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


def check(*ids: str, name: str | None = None):
    """Marks a check of the checklist lines `ids`; it takes the run's Context. It runs once its
    module is listed in readiness.checks."""

    def mark(func):
        func.readiness_check = Check(name or func.__name__, ids, func)
        return func

    return mark


def collect(modules) -> list[Check]:
    """The checks the modules define, module by module, each in the order it is written: marked
    functions, and lists of them (checks made in a loop)."""
    found = []
    for module in modules:
        for value in vars(module).values():
            for item in value if isinstance(value, list) else [value]:
                if hasattr(item, "readiness_check") and item.__module__ == module.__name__:
                    found.append(item.readiness_check)
    names = [found_check.name for found_check in found]
    twice = {name for name in names if names.count(name) > 1}
    if twice:
        raise ValueError(f"two readiness checks are called {', '.join(sorted(twice))}")
    return found
