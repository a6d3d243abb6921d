"""The rider socket through a real gunicorn + uvicorn server, over a real Redis channel layer."""

import json
from datetime import timedelta

import pytest
import websockets.sync.client
from django.db import connections
from django.utils import timezone

from accounts.tests.support import OTP_REQUEST_URL, OTP_VERIFY_URL, code_from_outbox
from devstack.env import base_env, database_url
from devstack.ports import LOCALHOST
from devstack.redis import RedisServer
from devstack.web import Server, start_server
from riders.models import Rider, RiderLocation
from riders.tests.support import MG_ROAD, fix

PHONE = "+919845077777"


@pytest.fixture
def server(transactional_db, tmp_path):
    """A development-mode server on the test database with its own throwaway Redis."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = base_env(
        DJANGO_ENV="development",
        DATABASE_URL=database_url(connections["default"].settings_dict),
        REDIS_URL=redis.url,
    )
    server = start_server(env, tmp_path)
    yield server
    server.stop()
    redis.kill()


def sign_in_as_rider(server: Server) -> str:
    """Signs in through the server's own API, as the rider app does; returns the access JWT."""
    assert server.request("POST", OTP_REQUEST_URL, json={"phone": PHONE}).status_code == 202
    verified = server.request(
        "POST",
        OTP_VERIFY_URL,
        json={"phone": PHONE, "otp": code_from_outbox(PHONE), "role": "rider"},
    )
    assert verified.status_code == 200, verified.text
    return verified.json()["access"]


@pytest.mark.checklist("P3.1", "P3.16", "P11.12")
@pytest.mark.slow
def test_a_rider_sends_a_location_over_the_socket_and_the_token_is_never_logged(server):
    # given a rider signed in through the real server
    token = sign_in_as_rider(server)
    url = f"ws://{LOCALHOST}:{server.port}/ws/rider/?token={token}"
    origin = f"http://{LOCALHOST}:{server.port}"

    # when the app connects and sends a fix
    body = fix(MG_ROAD, seconds_ago=1)
    with websockets.sync.client.connect(url, origin=origin, open_timeout=10) as socket:
        socket.send(json.dumps({"type": "location", **body}))
        reply = json.loads(socket.recv(timeout=10))
        socket.send("not json")
        error = json.loads(socket.recv(timeout=10))

    # then the server acknowledged it, stored it, and answered the bad frame
    assert reply == {"type": "location_ack", "recorded_at": reply["recorded_at"], "latest": True}
    assert error["code"] == "invalid_json"
    rider = Rider.objects.get(user__phone=PHONE)
    assert (round(rider.last_location.y, 6), round(rider.last_location.x, 6)) == MG_ROAD
    assert timezone.now() - rider.last_location_at < timedelta(seconds=30)
    assert RiderLocation.objects.filter(rider=rider).count() == 1

    # and the server's logs show the socket, with the token masked
    output = server.wait_for_log("/ws/rider/?token=[redacted]")
    assert f"rider {rider.pk} connected" in output
    assert token not in output
    assert token.split(".")[2] not in output
