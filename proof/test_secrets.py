"""No secret in the working tree or anywhere in the git history (proof.secrets_scan)."""

import subprocess
from pathlib import Path

import pytest

from proof.secrets_scan import (
    BASELINE,
    audited_false_positives,
    scan_history,
    scan_tree,
    unexplained,
)


def _report(findings) -> str:
    return "Unaudited possible secrets (remove them, or audit them into .secrets.baseline):\n" + (
        "\n".join(f"  {finding}" for finding in findings)
    )


@pytest.mark.checklist("P1.2", "P10.1", "P7.3")
def test_the_working_tree_holds_no_unaudited_secret():
    found = unexplained(scan_tree(), audited_false_positives())
    assert not found, _report(found)


@pytest.mark.checklist("P1.2", "P10.1")
def test_no_commit_in_the_history_added_an_unaudited_secret():
    found = unexplained(scan_history(), audited_false_positives())
    assert not found, _report(found)


def test_every_baseline_entry_was_audited_as_not_a_secret():
    import json

    results = json.loads(BASELINE.read_text())["results"]
    entries = [entry for listed in results.values() for entry in listed]
    assert entries
    assert all(entry["is_secret"] is False for entry in entries)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.mark.checklist("P10.1")
def test_the_scan_finds_secrets_planted_in_a_commit_and_deleted_after(tmp_path):
    # given a repository where one commit added real-looking secrets and the next deleted them
    # (built from pieces, so this file itself holds none)
    aws = "AKIA" + "Q3EGRIUY6BDTMKVZ"
    razorpay = "rzp_" + "live_" + "Hk29sLqPz81XwA"
    key_header = "-----BEGIN " + "RSA PRIVATE KEY-----"
    body = (
        f'AWS_ACCESS_KEY_ID = "{aws}"\n'
        f'RAZORPAY_KEY_ID = "{razorpay}"\n'
        f"{key_header}\nMIIEowIBAAKCAQEA7bq98u\n-----END RSA PRIVATE KEY-----\n"
    )
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "settings.py").write_text(body)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "oops")
    (repo / "settings.py").write_text("# nothing here\n")
    _git(repo, "commit", "-q", "-am", "remove")

    # when both scans run
    in_tree = scan_tree(repo)
    in_history = unexplained(scan_history(repo), audited_false_positives())

    # then the tree is clean now, but the history still gives all three away
    assert in_tree == []
    assert {finding.type for finding in in_history} >= {
        "AWS Access Key",
        "Razorpay live key",
        "Private Key",
    }
    assert all(finding.filename == "settings.py" for finding in in_history)
