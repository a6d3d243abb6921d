"""The `sockets` role (SERVER_ROLE=sockets): gunicorn serving the WebSockets from workers that
routine recycling never touches, and that drain their sockets slowly when they must go.

Real gunicorn + uvicorn servers on a throwaway Redis and the test database; real WebSocket
clients holding customers' tracking sockets.
"""

import contextlib
import signal
import threading
import time

import httpx
import pytest
import websockets.sync.client
from django.conf import settings
from django.db import connections
from websockets.exceptions import ConnectionClosed

from devstack.env import base_env, database_url
from devstack.ports import LOCALHOST
from devstack.redis import RedisServer
from devstack.wait import wait_for
from devstack.web import Server, start_server
from orders.tests.factories import OrderFactory
from riders.tests.factories import access_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECYCLE_AFTER = 20  # the web role's GUNICORN_MAX_REQUESTS in these tests


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("sockets-redis"))
    server.start()
    yield server
    server.kill()


def role_env(redis: RedisServer, role: str, **changes: str) -> dict[str, str]:
    return base_env(
        DJANGO_ENV="development",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,  # tokens made here are good there
        DATABASE_URL=database_url(connections["default"].settings_dict),
        REDIS_URL=redis.url,
        SERVER_ROLE=role,
        GUNICORN_MAX_REQUESTS=str(RECYCLE_AFTER),
        GUNICORN_MAX_REQUESTS_JITTER="1",
        WS_MAX_SOCKETS_PER_USER="1000",  # one customer holds them all
        **changes,
    )


@pytest.fixture
def tracking_url():
    """A function: the URL of a customer's tracking socket on `server`."""
    order = OrderFactory(status="searching_rider")
    token = access_token(order.customer)
    return lambda server: f"ws://{LOCALHOST}:{server.port}/ws/delivery/{order.pk}/?token={token}"


class Held:
    """Sockets held open, each read in a thread of its own until the server closes it."""

    def __init__(self, url: str, count: int):
        self.closed: dict[int, tuple[int, float]] = {}  # index -> (close code, when)
        self.sockets = []
        self.stack = contextlib.ExitStack()
        for _ in range(count):
            socket = self.stack.enter_context(websockets.sync.client.connect(url, open_timeout=10))
            assert '"type": "status"' in socket.recv(timeout=10)  # the first frame: it is live
            self.sockets.append(socket)
        self.readers = [
            threading.Thread(target=self._read, args=(index,), daemon=True)
            for index in range(count)
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, index: int) -> None:
        socket = self.sockets[index]
        try:
            while True:
                socket.recv()
        except ConnectionClosed:
            self.closed[index] = (socket.close_code, time.monotonic())

    def all_alive(self) -> bool:
        return not self.closed and all(s.ping().wait(5) for s in self.sockets)

    def close(self) -> None:
        self.stack.close()


def test_routine_recycling_drops_no_socket_of_the_sockets_role(redis, tracking_url, tmp_path):
    # given a web role recycled after 20 requests, and a sockets role, both of two workers,
    # configured alike; a customer's order followed on 30 sockets of the sockets role
    web = start_server(role_env(redis, "web"), tmp_path / "web", workers=2)
    stack = contextlib.ExitStack()
    stack.callback(web.stop)
    with stack:
        sockets = start_server(role_env(redis, "sockets"), tmp_path / "sockets", workers=2)
        stack.callback(sockets.stop)
        held = Held(tracking_url(sockets), 30)
        stack.callback(held.close)
        # when the API serves 120 requests (each web worker recycled several times), and 60
        # more sockets open and close on the sockets role
        for _ in range(120):
            assert api_call(web) == 200
        for _ in range(60):
            with websockets.sync.client.connect(tracking_url(sockets), open_timeout=10) as s:
                s.recv(timeout=10)

        # then every held socket is still open and answers, and the sockets role recycled
        # nothing, while the web role did as P3.8 asks
        assert held.all_alive(), held.closed
        assert web.output().count("Maximum request limit") >= 4, web.output()[-2000:]
        assert "Maximum request limit" not in sockets.output()
        # the same sockets on the web role are cut by its recycling (what the role is for)
        on_web = Held(tracking_url(web), 5)
        stack.callback(on_web.close)

        # (requests until each worker holding one has been recycled: the kernel spreads them
        # unevenly between the two)
        def recycled_all() -> bool:
            api_call(web)
            return len(on_web.closed) == 5

        wait_for(recycled_all, 60, "the web role's recycles to close them", interval=0)
        assert {code for code, _ in on_web.closed.values()} == {1012}


def test_a_leaving_sockets_worker_closes_its_sockets_spread_over_the_drain(
    redis, tracking_url, tmp_path
):
    # given a sockets role draining over 4 s, holding 24 sockets
    env = role_env(redis, "sockets", SOCKETS_DRAIN_SECONDS="4")
    sockets = start_server(env, tmp_path / "sockets", workers=2)
    try:
        held = Held(tracking_url(sockets), 24)
        # when it is stopped, as a deploy stops it (SIGTERM)
        stopped_at = time.monotonic()
        sockets.process.send_signal(signal.SIGTERM)
        wait_for(lambda: len(held.closed) == 24, 15, "every socket to be closed")
        exit_code = sockets.process.wait(timeout=20)

        # then each socket was closed once with 1012 ("reconnect"), spread over the drain
        # window rather than all at once, and the server stopped cleanly within its grace
        codes = {code for code, _ in held.closed.values()}
        times = sorted(when - stopped_at for _, when in held.closed.values())
        assert codes == {1012}, held.closed
        assert times[-1] - times[0] >= 1.5, times  # 24 uniform closes in 4 s: spread
        assert times[-1] <= 4 + 2, times
        assert exit_code == 0, sockets.output()[-3000:]
        held.close()
    finally:
        sockets.stop()


def test_a_sockets_worker_past_its_memory_limit_drains_and_is_replaced(
    redis, tracking_url, tmp_path
):
    # given a sockets role whose workers may use 1 MiB (every worker uses more) once up 3 s,
    # checked each second (GUNICORN_TIMEOUT 2 s: gunicorn's heartbeat is half of it)
    env = role_env(
        redis,
        "sockets",
        SOCKETS_MAX_MEMORY_MB="1",
        SOCKETS_MIN_UPTIME_SECONDS="3",
        SOCKETS_DRAIN_SECONDS="2",
        GUNICORN_TIMEOUT="2",
    )
    sockets = start_server(env, tmp_path / "sockets", workers=1)
    try:
        held = Held(tracking_url(sockets), 3)

        # then the worker leaves within a few seconds, draining its sockets with 1012
        wait_for(lambda: len(held.closed) == 3, 20, "the worker past its memory to drain")
        assert {code for code, _ in held.closed.values()} == {1012}
        assert "past SOCKETS_MAX_MEMORY_MB" in sockets.output()
        # and gunicorn starts another in its place, which serves
        wait_for(lambda: sockets.output().count("Booting worker") >= 2, 20, "a new worker to boot")
        assert sockets.process.poll() is None
        wait_for(lambda: _healthy(sockets), 20, "the sockets role to answer again")
    finally:
        sockets.stop()


def api_call(web: Server) -> int:
    """GET /api/config/ on a fresh connection."""
    return web.get("/api/config/").status_code


def _healthy(server: Server) -> bool:
    try:
        return server.get("/health/", timeout=3).status_code == 200
    except httpx.TransportError:
        return False
