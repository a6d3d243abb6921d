"""What gunicorn_conf.py's bind, port, keep-alive, preload and log level do, on one real server
(core/tests/test_gunicorn_conf.py reads the values back; test_graceful_shutdown.py shows the
graceful timeout and the recycling)."""

import http.client
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from devstack.env import base_env
from devstack.wait import wait_for
from devstack.web import start_server

pytestmark = pytest.mark.slow

KEEPALIVE = 1


def machine_address() -> str:
    """This machine's own IPv4 address, the one its outgoing packets would leave from."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks the outgoing address
        return probe.getsockname()[0]
    finally:
        probe.close()


@pytest.mark.checklist("P3.2", "P3.3", "P3.4", "P3.7", "P3.13", "P7.11")
def test_the_server_listens_on_port_everywhere_logs_info_and_closes_idle_connections(
    tmp_path,
):
    # given the server on the PORT start_server picks, keep-alive 1 s, workers by default
    server = start_server(base_env(GUNICORN_KEEPALIVE=str(KEEPALIVE)), tmp_path, workers=None)
    try:
        # then it runs two workers per CPU, and one
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        wait_for(
            lambda: len(children.read_text().split()) == os.cpu_count() * 2 + 1,
            20,
            f"{os.cpu_count() * 2 + 1} workers",
        )

        # and it answers on PORT on every interface: loopback and this machine's own address
        own = machine_address()
        assert not own.startswith("127."), "this machine has no address but loopback"
        for address in ("127.0.0.1", own):
            connection = http.client.HTTPConnection(address, server.port, timeout=5)
            connection.request("GET", "/health/")
            assert connection.getresponse().status in {200, 400}, address  # 400: host not allowed
            connection.close()

        # and keeps an idle connection open for the keep-alive, then closes it
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            sockets = []
            for wait in (0, KEEPALIVE / 3):
                time.sleep(wait)
                connection.request("GET", "/health/")
                response = connection.getresponse()
                response.read()
                assert response.status == 200
                sockets.append(connection.sock)
            kept_alive = sockets[0]
            assert kept_alive is not None and sockets[1] is kept_alive, "closed within keep-alive"
            time.sleep(KEEPALIVE + 1.5)
            assert kept_alive.recv(1) == b"", "still open past the keep-alive"
        finally:
            connection.close()

        # and it logs at INFO by default
        log = server.output()
        assert " INFO " in log and "Listening at: http://0.0.0.0:" in log, log[-2000:]
    finally:
        server.stop()


@pytest.mark.checklist("P3.10")
def test_the_app_is_loaded_in_the_master_so_a_broken_one_stops_it_before_any_worker(tmp_path):
    # when the server is started on an app that cannot be imported
    with pytest.raises(RuntimeError) as failed:
        start_server(base_env(), tmp_path, workers=2, app="core.tests.no_such_module:application")

    # then the master itself failed to import it (preloaded) and never forked a worker
    output = str(failed.value)
    assert "No module named 'core.tests.no_such_module'" in output, output[-2000:]
    assert "Booting worker" not in output, output[-2000:]


@pytest.mark.checklist("P3.5", "P7.12")
def test_a_worker_stuck_past_the_timeout_is_killed_and_replaced(tmp_path):
    # given a worker that stops answering its master (its event loop blocked for 60 s by code
    # stuck in a request), with GUNICORN_TIMEOUT at 2 s
    server = start_server(
        base_env(GUNICORN_TIMEOUT="2"),
        tmp_path,
        app="core.tests.slow_accept_app:app",
        ready_path="/",
    )
    try:
        started = time.monotonic()
        with pytest.raises(httpx.TransportError):
            server.get("/block/60", timeout=30)
        lasted = time.monotonic() - started

        # then the master killed it after about the timeout, not the 60 s, and forked another,
        # which answers
        log = server.output()
        assert "WORKER TIMEOUT" in log, log[-2000:]
        assert 1.5 <= lasted <= 15, lasted
        assert server.get("/", timeout=10).status_code == 200
    finally:
        server.stop()
