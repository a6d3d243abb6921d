"""The previous release of this repository, for the rollback tests (test_rollback.py runs its
code, test_migration_safety.py reads its models): the commit before the latest change to a
migration, exported as a deploy of it would hold it."""

import subprocess
import tarfile
from pathlib import Path

from devstack.env import PROJECT_DIR

MIGRATIONS = ":(glob)*/migrations/[0-9]*.py"


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    ).stdout


def previous_release() -> str:
    """The commit the current schema's release replaces: the one before the latest commit that
    changed a migration (HEAD itself when the working tree holds a migration not yet committed).
    """
    if git("status", "--porcelain", "--", MIGRATIONS).strip():
        return git("rev-parse", "HEAD").strip()
    latest = git("log", "-1", "--format=%H", "--", MIGRATIONS).strip()
    assert latest, "no commit changed a migration: is this a shallow clone?"
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{latest}^"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, f"the parent of {latest} is not here: this test needs history"
    return found.stdout.strip()


def export(commit: str, into: Path) -> Path:
    """The commit's files (git archive), as a deploy of that release would have them."""
    archive = into.with_suffix(".tar")
    with archive.open("wb") as out:
        subprocess.run(
            ["git", "archive", "--format=tar", commit],
            cwd=PROJECT_DIR,
            stdout=out,
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def migration_names(tree: Path) -> set[str]:
    return {str(path.relative_to(tree)) for path in tree.glob("*/migrations/[0-9]*.py")}
