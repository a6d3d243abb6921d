"""The Dockerfile lines test_deploy_configs.py does not spell out, and the health check script.

There is no Docker engine here (docs/deploy.md, "What was not verified here"): the Dockerfile is
read instruction by instruction, and deploy/docker/healthcheck.sh, the image's HEALTHCHECK
command, is run for real against a local HTTP server.
"""

import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from devstack.env import PROJECT_DIR
from devstack.ports import free_port

HEALTHCHECK = PROJECT_DIR / "deploy" / "docker" / "healthcheck.sh"


def _stages() -> dict[str, list[str]]:
    """Each stage's instructions (continuation lines joined, comments dropped), by stage name."""
    text = (PROJECT_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (line.strip() for line in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            current = stages.setdefault(line.rsplit(" AS ", 1)[-1], [])
        if current is not None:
            current.append(re.sub(r"\s+", " ", line))
    return stages


def _dockerignore() -> set[str]:
    lines = (PROJECT_DIR / ".dockerignore").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


@pytest.mark.checklist("P2.5", configured=True)
def test_dependencies_are_installed_from_the_lock_alone_with_a_wheel_cache():
    builder = _stages()["builder"]
    copies = [line for line in builder if line.startswith("COPY ")]
    sync = next(i for i, line in enumerate(builder) if "uv sync" in line)

    # Only the lock reaches this stage: a code change leaves the dependency layer cached.
    assert copies == ["COPY pyproject.toml uv.lock ./"]
    assert builder.index(copies[0]) < sync
    # The cache mount is where uv keeps wheels, so a changed lock rebuilds only what changed.
    cache_dir = re.search(r"UV_CACHE_DIR=(\S+)", " ".join(builder))[1]
    assert f"--mount=type=cache,target={cache_dir}" in builder[sync]
    assert "--frozen" in builder[sync] and "--no-install-project" in builder[sync]


@pytest.mark.checklist("P2.4", configured=True)
def test_the_runtime_takes_only_the_virtualenv_from_the_builder():
    runtime = _stages()["runtime"]

    from_builder = [line for line in runtime if "--from=builder" in line]
    assert from_builder == ["COPY --from=builder /opt/venv /opt/venv"]
    installs = " ".join(line for line in runtime if "apt-get install" in line)
    assert installs, "the runtime installs its libraries with apt-get"
    assert not re.search(r"\b(build-essential|gcc|g\+\+|make|\S+-dev)\b", installs), installs
    assert "rm -rf /var/lib/apt/lists/*" in installs


@pytest.mark.checklist("P2.7", "P2.8", configured=True)
def test_static_and_media_directories_are_made_and_owned_by_the_app_user():
    runtime = _stages()["runtime"]
    text = "\n".join(runtime)

    env = " ".join(line for line in runtime if line.startswith("ENV "))
    assert "STATIC_ROOT=/app/staticfiles" in env and "MEDIA_ROOT=/app/media" in env
    prepare = next(line for line in runtime if "mkdir -p" in line)
    assert re.search(r"mkdir -p /app/staticfiles /app/media\b", prepare)
    assert re.search(r"chown appuser:appuser /app/staticfiles /app/media\b", prepare)
    assert "COPY . /app" in runtime  # the code stays root's; only these directories are the app's
    # collectstatic runs as the app user, after the directories exist
    user = runtime.index("USER 1000:1000")
    collect = next(i for i, line in enumerate(runtime) if "collectstatic" in line)
    assert runtime.index(prepare) < user < collect
    assert {"staticfiles", "media"} <= _dockerignore()  # local copies never overwrite them
    assert "useradd --uid 1000 --gid 1000" in text


@pytest.mark.checklist("P2.9", configured=True)
def test_the_entrypoint_is_copied_made_executable_and_used():
    runtime = _stages()["runtime"]

    ignored = _dockerignore()
    assert "entrypoint.sh" not in ignored and "deploy" not in ignored
    assert "COPY . /app" in runtime
    chmod = next(line for line in runtime if "chmod" in line)
    assert re.search(r"chmod 0755 /app/entrypoint.sh /app/deploy/docker/healthcheck.sh", chmod)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/app/entrypoint.sh"]' in runtime
    # and the script itself is a valid bash program
    script = PROJECT_DIR / "entrypoint.sh"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert os.access(script, os.X_OK)
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


@pytest.mark.checklist("P2.10", "P2.11", "P6.13", configured=True)
def test_port_5000_is_exposed_and_the_healthcheck_probes_it():
    runtime = _stages()["runtime"]

    env = " ".join(line for line in runtime if line.startswith("ENV "))
    assert "PORT=5000" in env
    assert "EXPOSE 5000" in runtime
    (healthcheck,) = [line for line in runtime if line.startswith("HEALTHCHECK ")]
    assert healthcheck.endswith('CMD ["/app/deploy/docker/healthcheck.sh"]')
    script = HEALTHCHECK.read_text()
    assert 'PORT="${PORT:-5000}"' in script
    assert 'nc -z -w 3 127.0.0.1 "$PORT"' in script
    assert any("netcat-openbsd" in line for line in runtime if "apt-get install" in line)
    # the script's own waits (nc 3 s, HTTP 4 s) end before Docker's timeout would kill it
    timeout = int(re.search(r"--timeout=(\d+)s", healthcheck)[1])
    assert timeout > 3 + 4


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.send_response(self.status if self.path == "/health/" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _healthcheck(port: int, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HEALTHCHECK)],
        env={
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "PORT": str(port),
            "PROCESS_ROLE": "web",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.checklist("P2.11", "P6.13")
@pytest.mark.parametrize(
    ("status", "strict", "healthy"),
    [(200, "", True), (503, "", True), (503, "1", False), (500, "", False)],
    ids=["ok", "dependency-down", "dependency-down-strict", "broken"],
)
def test_the_healthcheck_script_answers_by_the_health_status(
    health_server, monkeypatch, status, strict, healthy
):
    monkeypatch.setattr(_Health, "status", status)

    result = _healthcheck(health_server.server_address[1], HEALTHCHECK_STRICT=strict)

    assert (result.returncode == 0) is healthy, result.stdout + result.stderr
    assert f"/health/: {status}" in result.stdout


@pytest.mark.checklist("P2.11", "P6.13")
def test_the_healthcheck_script_fails_when_nothing_listens_on_the_port():
    result = _healthcheck(free_port())

    assert result.returncode == 1
    assert "nothing listens on port" in result.stdout
