"""A web worker recycled after GUNICORN_MAX_REQUESTS while a WebSocket handshake is in flight.

Through a real gunicorn: one worker, a limit of 3 requests, and an app that takes 1.5 s to
accept a socket. The handshake is sent first, then the requests that use up the limit, so the
worker starts leaving while the app still holds the handshake.
"""

import asyncio
import subprocess
import time

import httpx
import pytest
import websockets.asyncio.client
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devstack.env import PROJECT_DIR, VENV_BIN, base_env
from devstack.ports import LOCALHOST, free_port

pytestmark = pytest.mark.slow

MAX_REQUESTS = 3


@pytest.fixture
def gunicorn(request, tmp_path):
    """gunicorn with the given worker class, one worker, --max-requests 3 (jitter 0)."""
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            f"--bind={LOCALHOST}:{port}",
            "--workers=1",
            f"--worker-class={request.param}",
            f"--max-requests={MAX_REQUESTS}",
            "--graceful-timeout=10",
            "core.tests.slow_accept_app:app",
        ],
        cwd=PROJECT_DIR,
        env=base_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://{LOCALHOST}:{port}/", timeout=1)  # uses up one of the three
            break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        process.kill()
        raise AssertionError((tmp_path / "gunicorn.log").read_text())
    yield port, tmp_path / "gunicorn.log"
    process.terminate()
    process.wait(timeout=20)
    log.close()


async def handshake_while_the_worker_leaves(port: int) -> tuple[int | None, int | None]:
    """(HTTP status of a refused handshake, close code of an accepted socket)."""

    async def use_up_the_limit():
        await asyncio.sleep(0.3)  # the handshake is in the app by now
        async with httpx.AsyncClient(base_url=f"http://{LOCALHOST}:{port}") as client:
            for _ in range(MAX_REQUESTS):
                await client.get("/", headers={"Connection": "close"})

    limit = asyncio.create_task(use_up_the_limit())
    try:
        async with websockets.asyncio.client.connect(
            f"ws://{LOCALHOST}:{port}/ws/", open_timeout=10, close_timeout=5
        ) as socket:
            try:
                await asyncio.wait_for(socket.recv(), timeout=10)
            except ConnectionClosed as closed:
                return None, closed.rcvd.code if closed.rcvd else None
            return None, None
    except InvalidStatus as refused:
        return refused.response.status_code, None
    finally:
        await limit


@pytest.mark.parametrize(
    ("gunicorn", "answer"),
    [
        # 1012: service restart, which clients take as "reconnect"
        pytest.param("config.workers.UvicornWorker", (None, 1012), id="project-worker"),
        # the case the project's worker exists for: the stock one answers that handshake 500
        pytest.param("uvicorn_worker.UvicornWorker", (500, None), id="stock-worker"),
    ],
    indirect=["gunicorn"],
)
def test_a_handshake_in_flight_when_the_worker_leaves(gunicorn, answer):
    port, log = gunicorn

    status, close_code = asyncio.run(handshake_while_the_worker_leaves(port))

    output = log.read_text()
    assert "Maximum request limit" in output, output
    assert (status, close_code) == answer, output
