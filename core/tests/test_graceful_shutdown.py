"""What gunicorn_conf.py's graceful timeout and request recycling do, through real servers.

P3.6: on SIGTERM a web worker stops taking requests, lets those in flight finish for up to
10 s, or GUNICORN_GRACEFUL_TIMEOUT less 2 s when that is shorter (uvicorn's own graceful
timeout, config.workers), cuts what is left, and exits before gunicorn's deadline (30 s in
production) would kill it. P3.8, P3.9: workers recycled after GUNICORN_MAX_REQUESTS plus a
jitter while clients keep calling: no request fails.
"""

import concurrent.futures
import re
import signal
import threading
import time

import httpx
import pytest

from devstack.env import base_env
from devstack.ports import LOCALHOST
from devstack.web import start_server

pytestmark = pytest.mark.slow

GRACEFUL = 6  # GUNICORN_GRACEFUL_TIMEOUT here (30 in production): uvicorn cuts at 4 s


@pytest.mark.checklist("P3.6")
def test_sigterm_lets_short_requests_finish_and_cuts_long_ones_before_the_deadline(tmp_path):
    # given the project's gunicorn configuration with a graceful timeout of 6 s, serving an
    # app whose /sleep/<n> answers after n seconds
    server = start_server(
        base_env(GUNICORN_GRACEFUL_TIMEOUT=str(GRACEFUL)),
        tmp_path,
        app="core.tests.slow_accept_app:app",
    )
    process, port = server.process, server.port
    try:
        answers: dict[str, tuple[object, float]] = {}

        def call(name: str, seconds: float) -> None:
            started = time.monotonic()
            try:
                response = httpx.get(f"http://{LOCALHOST}:{port}/sleep/{seconds}", timeout=60)
                answers[name] = (response.status_code, time.monotonic() - started)
            except httpx.TransportError as error:
                answers[name] = (type(error).__name__, time.monotonic() - started)

        calls = [
            threading.Thread(target=call, args=("short", 2)),
            threading.Thread(target=call, args=("long", 60)),
        ]
        for thread in calls:
            thread.start()
        time.sleep(0.5)  # both in flight

        # when it is stopped, as a deploy stops it
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=GRACEFUL + 10)
        exited_after = time.monotonic() - stopped
        for thread in calls:
            thread.join(timeout=10)

        # then the short request finished, the long one was cut near GRACEFUL - 2 s, and the
        # server was gone before gunicorn's own deadline, cleanly
        assert answers["short"][0] == 200, answers
        status, lasted = answers["long"]
        assert status != 200, answers
        assert GRACEFUL - 2 - 0.5 <= lasted <= GRACEFUL + 0.5, answers
        assert exit_code == 0
        assert exited_after < GRACEFUL + 1, exited_after
    finally:
        server.stop()


@pytest.mark.checklist("P3.8", "P3.9")
def test_workers_recycled_under_load_fail_no_request(tmp_path):
    # given the service with two workers recycled after about 10 requests (jitter 3)
    server = start_server(
        base_env(GUNICORN_MAX_REQUESTS="10", GUNICORN_MAX_REQUESTS_JITTER="3"),
        tmp_path,
        workers=2,
        ready_path="/api/config/",
    )
    base_url = server.base_url
    try:
        # when six clients, each on its own kept-alive connection, make 60 calls each
        def client(_) -> list[object]:
            outcomes = []
            with httpx.Client(base_url=base_url, timeout=10) as kept_alive:
                for _ in range(60):
                    try:
                        outcomes.append(kept_alive.get("/api/config/").status_code)
                    except httpx.TransportError as error:
                        outcomes.append(type(error).__name__)
            return outcomes

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            outcomes = [o for many in pool.map(client, range(6)) for o in many]

        # then every call was answered 200 while the workers were recycled many times: a
        # leaving worker answers a request that reaches an idle connection as it leaves
        # (config.workers.LingeringHttpProtocol) instead of cutting it
        log = server.output()
        assert outcomes == [200] * 360, [o for o in outcomes if o != 200]
        assert log.count("Maximum request limit") >= 8, log[-3000:]
        # each worker at its own limit, 10 to 13: the jitter keeps them from leaving together
        limits = {int(n) for n in re.findall(r"Maximum request limit of (\d+)", log)}
        assert len(limits) >= 2 and limits <= set(range(10, 14)), limits
        assert "Traceback" not in log, log[-3000:]
    finally:
        server.stop()
