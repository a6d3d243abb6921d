"""gunicorn_conf.py carries checklist phase 3: workers, port, timeouts, recycling, logs, hooks."""

import json
import os
import subprocess
import sys

import pytest

from devstack.env import PROJECT_DIR, base_env

# Loads the file the way gunicorn does (as plain Python) in a fresh process, prints its values.
LOAD_CONF = """
import json, runpy
conf = runpy.run_path("gunicorn_conf.py")
names = ["bind", "workers", "worker_class", "timeout", "graceful_timeout", "keepalive",
         "max_requests", "max_requests_jitter", "preload_app", "accesslog", "errorlog",
         "loglevel", "control_socket_disable"]
hooks = ["on_starting", "when_ready", "post_fork", "worker_int", "worker_abort",
         "child_exit", "worker_exit", "on_exit"]
present = [h for h in hooks if callable(conf.get(h))]
print(json.dumps({**{n: conf[n] for n in names}, "hooks": present}))
"""


def load_conf(tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LOAD_CONF],
        cwd=PROJECT_DIR,
        env=base_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"), **env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.checklist("P11.2")
@pytest.mark.checklist(
    "P3.1",
    "P3.2",
    "P3.3",
    "P3.4",
    "P3.5",
    "P3.6",
    "P3.7",
    "P3.8",
    "P3.9",
    "P3.10",
    "P3.11",
    "P3.12",
    "P3.13",
    "P3.14",
    "P2.21",
    "P7.8",
    "P7.11",
    "P7.12",
    "P7.13",
    "P8.10",
    configured=True,
)
def test_defaults_follow_the_checklist(tmp_path):
    result = load_conf(tmp_path)

    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout)
    assert conf["bind"] == "0.0.0.0:5000"
    assert conf["workers"] == os.cpu_count() * 2 + 1
    assert conf["worker_class"] == "config.workers.UvicornWorker"
    assert conf["timeout"] == 120
    assert conf["graceful_timeout"] == 30
    assert conf["keepalive"] == 5
    assert (conf["max_requests"], conf["max_requests_jitter"]) == (1000, 100)
    assert conf["preload_app"] is True
    assert (conf["accesslog"], conf["errorlog"]) == ("-", "-")  # stdout, stderr
    assert conf["loglevel"] == "info"
    assert set(conf["hooks"]) >= {"on_starting", "when_ready", "child_exit", "on_exit"}


@pytest.mark.checklist("P3.3", "P3.13", "P7.8", "P7.11", "P7.12", "P7.13", configured=True)
def test_environment_overrides(tmp_path):
    result = load_conf(
        tmp_path,
        PORT="8080",
        GUNICORN_WORKERS="3",
        GUNICORN_TIMEOUT="60",
        GUNICORN_GRACEFUL_TIMEOUT="20",
        GUNICORN_KEEPALIVE="65",
        LOG_LEVEL="WARNING",
    )

    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout)
    assert conf["bind"] == "0.0.0.0:8080"
    assert conf["workers"] == 3
    assert (conf["timeout"], conf["graceful_timeout"], conf["keepalive"]) == (60, 20, 65)
    assert conf["loglevel"] == "warning"


@pytest.mark.parametrize(
    ("name", "value"), [("PORT", "http"), ("GUNICORN_WORKERS", "0"), ("GUNICORN_TIMEOUT", "-5")]
)
def test_a_bad_number_stops_with_its_name(tmp_path, name, value):
    result = load_conf(tmp_path, **{name: value})

    assert result.returncode != 0
    assert name in result.stderr
