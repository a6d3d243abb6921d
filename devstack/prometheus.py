"""Starts a throwaway Prometheus (Debian's binary) on a free loopback port, scraping given targets
every second with given rules, its data in a temporary directory; and promtool, for the checks.
"""

import shutil
import subprocess
from pathlib import Path

import httpx
import yaml

from devstack.ports import LOCALHOST, free_port
from devstack.wait import wait_for

MONITORING_DIR = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
MISSING = (
    "{} is not installed: run `make bootstrap` (scripts/bootstrap.sh installs Debian's prometheus)"
)


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(MISSING.format(name))
    return path


def promtool(*args: str, cwd: Path = MONITORING_DIR) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


class PrometheusServer:
    def __init__(self, work_dir: Path, *, job: str, targets: list[str], rules: dict):
        self.work_dir = work_dir
        self.port = free_port()
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": ["rules.yml"],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        }
        (work_dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._log = (work_dir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={work_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={work_dir / 'data'}",
                f"--web.listen-address={LOCALHOST}:{self.port}",
            ],
            cwd=work_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.base_url = f"http://{LOCALHOST}:{self.port}"
        try:
            wait_for(self._ready, 30, "Prometheus to be ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log()[-3000:]}")
        try:
            return httpx.get(f"{self.base_url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return (self.work_dir / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params) -> dict:
        response = httpx.get(f"{self.base_url}/api/v1/{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()["data"]

    def alerts(self, name: str) -> list[dict]:
        """The alert's pending and firing instances, as Prometheus's /api/v1/alerts lists them."""
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
