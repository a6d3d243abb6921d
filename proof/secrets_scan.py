"""The secret scan: detect-secrets over the working tree and every commit of the history.

Every detector detect-secrets ships (AWS, private keys, Stripe, Twilio, basic-auth URLs,
high-entropy strings, "password = ..." keywords ...) plus proof.secret_plugins. What it finds
is checked against `.secrets.baseline`, where each known finding was audited by hand and marked
`"is_secret": false` (example values in .env.example, fakes in tests, placeholders in the
deploy examples). A finding whose hash is not audited there fails the scan: a new secret, or a
new fake that needs its own look before it is allowed.

Run it: `.venv/bin/pytest proof/test_secrets.py` (CI runs it in `make test`).
"""

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from detect_secrets import SecretsCollection
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.settings import default_settings, get_filters, transient_settings

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".secrets.baseline"
PLUGIN_FILE = Path(__file__).resolve().parent / "secret_plugins.py"


@dataclass(frozen=True)
class Finding:
    filename: str
    type: str
    hashed_secret: str
    line_number: int
    where: str  # "working tree" or the commit that added it

    def __str__(self) -> str:
        return f"{self.where}: {self.filename}:{self.line_number} {self.type}"


@contextmanager
def _all_detectors(*, history: bool = False):
    """detect-secrets configured with every detector, ours too. For the history, files need not
    exist any more (a secret in a file deleted since still counts), so its "the file must
    exist" filter is off."""
    with default_settings() as settings:
        plugins = settings.json()["plugins_used"]
        filters = settings.json()["filters_used"]
    plugins.append({"name": "RazorpayLiveKeyDetector", "path": PLUGIN_FILE.as_uri()})
    # detect-secrets caches which class detects what; it must see the plugin file (and forget
    # it afterwards).
    get_mapping_from_secret_type_to_class.cache_clear()
    try:
        with transient_settings({"plugins_used": plugins, "filters_used": filters}) as active:
            get_mapping_from_secret_type_to_class.cache_clear()
            if history:
                active.disable_filters("detect_secrets.filters.common.is_invalid_file")
                get_filters.cache_clear()
            yield
    finally:
        get_mapping_from_secret_type_to_class.cache_clear()


def _findings(collection: SecretsCollection, where: str) -> Iterator[Finding]:
    for filename, secret in collection:
        yield Finding(filename, secret.type, secret.secret_hash, secret.line_number or 0, where)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def scan_tree(root: Path = ROOT) -> list[Finding]:
    """Every file git tracks or would track (not ignored), as it is now."""
    files = [
        name
        for name in _git(
            root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"
        ).split("\0")
        if name and name != BASELINE.name and (root / name).is_file()
    ]
    collection = SecretsCollection(root=str(root))
    with _all_detectors():
        collection.scan_files(*files, num_processors=1)
    return list(_findings(collection, "working tree"))


def scan_history(root: Path = ROOT) -> list[Finding]:
    """The lines every commit of every branch added, so a secret deleted later still counts."""
    if _git(root, "rev-parse", "--is-shallow-repository").strip() == "true":
        raise RuntimeError("a shallow clone has no full history to scan; fetch --unshallow")
    findings = []
    commits = _git(root, "rev-list", "--all").split()
    with _all_detectors(history=True):
        for commit in commits:
            diff = _git(root, "show", "--format=", "--no-color", "-U0", "--no-renames", commit)
            collection = SecretsCollection(root=str(root))
            collection.scan_diff(diff)
            findings.extend(
                finding
                for finding in _findings(collection, f"commit {commit[:12]}")
                if finding.filename != BASELINE.name
            )
    return findings


def audited_false_positives(baseline: Path = BASELINE) -> set[str]:
    """Hashes of the findings audited as not secret in the baseline."""
    results = json.loads(baseline.read_text())["results"]
    return {
        entry["hashed_secret"]
        for entries in results.values()
        for entry in entries
        if entry.get("is_secret") is False
    }


def unexplained(findings: list[Finding], allowed: set[str]) -> list[Finding]:
    return [finding for finding in findings if finding.hashed_secret not in allowed]
