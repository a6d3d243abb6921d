"""How should web workers hold PostgreSQL connections? Measures one-row UPDATE requests/s.

Runs gunicorn three ways on loopback, same worker count, same wrk load, in one run:
  wsgi-sync       sync WSGI workers, CONN_MAX_AGE=600 (the baseline)
  asgi-conn-age   uvicorn workers, CONN_MAX_AGE=600 (Django persistent connections)
  asgi-pool       uvicorn workers, psycopg pool (OPTIONS["pool"])
and prints requests/s with the ratio to the baseline. Needs wrk (apt-get install wrk).

    .venv/bin/python bench/db_connections.py [--seconds 10] [--connections 16] [--workers 2]
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_BIN = ROOT / ".venv" / "bin"

SETUPS = {
    "wsgi-sync": {"worker": "sync", "app": "config.wsgi:application", "env": {"DB_POOL": "0"}},
    "asgi-conn-age": {"worker": None, "app": "config.asgi:application", "env": {"DB_POOL": "0"}},
    "asgi-pool": {"worker": None, "app": "config.asgi:application", "env": {"DB_POOL": "1"}},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_table() -> None:
    sql = (
        "CREATE TABLE IF NOT EXISTS bench_row (id int PRIMARY KEY, hits bigint NOT NULL);"
        "INSERT INTO bench_row VALUES (1, 0) ON CONFLICT (id) DO NOTHING;"
    )
    subprocess.run(
        [str(PYTHON_BIN / "python"), "manage.py", "dbshell", "--", "-c", sql],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def start_server(name: str, port: int, workers: int) -> subprocess.Popen:
    setup = SETUPS[name]
    env = {
        **os.environ,
        **setup["env"],
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "PORT": str(port),
        "GUNICORN_WORKERS": str(workers),
        "CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
        "PROMETHEUS_MULTIPROC_DIR": f"/tmp/bench-prometheus-{port}",  # noqa: S108
    }
    command = [str(PYTHON_BIN / "gunicorn"), "-c", "gunicorn_conf.py"]
    if setup["worker"]:
        command += ["--worker-class", setup["worker"]]
    command += ["--access-logfile", "/dev/null", setup["app"]]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/update/", timeout=2)
            return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit(f"{name}: server did not start")


def run_wrk(port: int, seconds: int, connections: int) -> tuple[float, int]:
    url = f"http://127.0.0.1:{port}/bench/update/"
    subprocess.run(["wrk", "-t1", "-c4", "-d2s", url], capture_output=True, check=True)  # noqa: S607 - warm-up
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))
    return rate, int(errors.group(1)) if errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    prepare_table()
    results = {}
    for name in SETUPS:
        port = free_port()
        server = start_server(name, port, args.workers)
        try:
            results[name] = run_wrk(port, args.seconds, args.connections)
        finally:
            server.terminate()
            server.wait(timeout=40)
    baseline = results["wsgi-sync"][0]
    print(f"{'setup':<16}{'req/s':>10}{'vs wsgi-sync':>14}{'failed':>8}")
    for name, (rate, failed) in results.items():
        print(f"{name:<16}{rate:>10.0f}{rate / baseline:>14.2f}{failed:>8}")
    json.dump(results, sys.stderr)


if __name__ == "__main__":
    main()
