"""Live tracking through the real stack: gunicorn + uvicorn, a Celery worker, Redis, PostGIS.

The server and the worker are separate processes on their own throwaway Redis (broker and
channel layer), using the test database. Nothing here calls a service function: customers and
riders act through the HTTP and WebSocket API only, as the apps do; ops' two steps (the
service area and approving the rider) go through the management command and the ORM, as they
would through the admin.
"""

import json
import time
from datetime import timedelta

import pytest
import websockets.sync.client
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from accounts.tests.support import OTP_REQUEST_URL, OTP_VERIFY_URL, code_from_outbox
from core.tests import servers
from core.tests.celery_processes import start_worker
from orders.models import Order
from orders.tests.factories import AREA, PICKUP, OrderFactory, ServiceAreaFactory
from riders.models import Earning, Rider
from riders.tests.factories import access_token, located

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CUSTOMER_PHONE = "+919845011111"
RIDER_PHONE = "+919845022222"
# About 1.5 km south-east of the pickup: a trip a scooter covers in the test's 90 s.
DROP = {"lat": 12.9616, "lng": 77.6046, "address": "Richmond Town"}


@pytest.fixture
def redis(tmp_path):
    server = servers.RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def server(redis, tmp_path):
    """A development-mode server that queues tasks to Redis (no eager tasks). It shares this
    process's secret key, so tokens made here are good there."""
    env = servers.base_env(
        DJANGO_ENV="development",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=servers.database_url(connections["default"].settings_dict),
        REDIS_URL=redis.url,
        CELERY_TASK_ALWAYS_EAGER="false",
    )
    server = servers.start_server(env, tmp_path / "web")
    yield server
    server.stop()


@pytest.fixture
def worker(redis, tmp_path):
    worker = start_worker(tmp_path, REDIS_URL=redis.url, DJANGO_ENV="development")
    yield worker
    worker.close()


def socket_url(server: servers.Server, path: str, token: str) -> str:
    return f"ws://{servers.LOCALHOST}:{server.port}{path}?token={token}"


def connect(server: servers.Server, path: str, token: str):
    origin = f"http://{servers.LOCALHOST}:{server.port}"
    return websockets.sync.client.connect(
        socket_url(server, path, token), origin=origin, open_timeout=10
    )


def frames_until(socket, frame_type: str, *, timeout: float = 15.0, **match) -> dict:
    """Reads frames until one of `frame_type` (and the `match` values) arrives; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {frame_type} frame matching {match} within {timeout} s")
        frame = json.loads(socket.recv(timeout=left))
        if frame.get("type") == frame_type and all(frame.get(k) == v for k, v in match.items()):
            return frame


def fix(lat: float, lng: float, *, seconds_ago: float = 0) -> dict:
    recorded_at = timezone.now() - timedelta(seconds=seconds_ago)
    return {"lat": lat, "lng": lng, "accuracy_m": 5, "recorded_at": recorded_at.isoformat()}


def sign_in(server: servers.Server, phone: str, role: str) -> dict[str, str]:
    assert server.request("POST", OTP_REQUEST_URL, json={"phone": phone}).status_code == 202
    verified = server.request(
        "POST", OTP_VERIFY_URL, json={"phone": phone, "otp": code_from_outbox(phone), "role": role}
    )
    assert verified.status_code == 200, verified.text
    return {"Authorization": f"Bearer {verified.json()['access']}"}


@pytest.mark.checklist("P9.5", "P9.9", "P9.10", "P11.12", "P12.19")
def test_the_customer_sees_the_riders_ping_within_a_second(server):
    # given an order in a rider's hands, and its customer watching over the socket
    order = OrderFactory(status="rider_assigned")
    rider = located(order.rider, lat=PICKUP["lat"], lng=PICKUP["lng"], seconds_ago=20)
    rider_headers = {"Authorization": f"Bearer {access_token(rider.user)}"}

    with connect(server, f"/ws/delivery/{order.pk}/", access_token(order.customer)) as socket:
        hello = frames_until(socket, "status")
        assert (hello["status"], hello["seq"]) == ("rider_assigned", 0)

        latencies = []
        for step in range(1, 6):
            # when the rider's app reports a new position over HTTP
            body = fix(PICKUP["lat"] + step * 0.0005, PICKUP["lng"], seconds_ago=20 - step)
            sent = time.monotonic()
            response = server.request(
                "POST", "/api/v1/riders/me/location/", json=body, headers=rider_headers
            )
            assert response.status_code == 202, response.text

            # then the customer's socket gets it, numbered, well within a second
            frame = frames_until(socket, "location", timeout=5)
            latencies.append(time.monotonic() - sent)
            assert frame["seq"] == step
            assert (frame["lat"], frame["lng"]) == (body["lat"], body["lng"])
            assert frame["order_id"] == str(order.pk)

    assert max(latencies) < 1.0, latencies
    order.refresh_from_db()
    assert order.tracking_seq == 5


def test_a_watching_socket_hears_the_rider_again_after_redis_restarts(server, redis):
    # given a customer watching an order in a rider's hands, the rider's pings reaching it
    order = OrderFactory(status="rider_assigned")
    rider = located(order.rider, lat=PICKUP["lat"], lng=PICKUP["lng"], seconds_ago=30)
    rider_headers = {"Authorization": f"Bearer {access_token(rider.user)}"}

    def ping(seconds_ago: float, north: float) -> None:
        body = fix(PICKUP["lat"] + north, PICKUP["lng"], seconds_ago=seconds_ago)
        response = server.request(
            "POST", "/api/v1/riders/me/location/", json=body, headers=rider_headers
        )
        assert response.status_code == 202, response.text

    with connect(server, f"/ws/delivery/{order.pk}/", access_token(order.customer)) as socket:
        frames_until(socket, "status")
        ping(20, 0.0002)
        assert frames_until(socket, "location", timeout=5)["seq"] == 1

        # when Redis dies (its data with it) and comes back on the same port
        redis.kill()
        redis.start()

        # then the same socket hears the rider's next pings: the server's channel layer has
        # reconnected and subscribed again; nothing had to be reopened by the app
        heard = None
        deadline = time.monotonic() + 15
        step = 0
        while heard is None and time.monotonic() < deadline:
            step += 1
            ping(10 - step * 0.5, 0.0002 + step * 0.0001)
            try:
                heard = frames_until(socket, "location", timeout=1)
            except (AssertionError, TimeoutError):
                continue
        assert heard is not None, "no location frame within 15 s of Redis coming back"
        assert heard["seq"] > 1
    assert "Exception in ASGI application" not in server.output()


def test_an_idle_socket_outlives_the_channel_layers_blocking_reads(server):
    # given a customer watching an order nothing happens to for 12 s, longer than the channel
    # layer's Redis read timeout (5 s): its listener must wait through it, over and over
    order = OrderFactory(status="rider_assigned")
    rider = located(order.rider, lat=PICKUP["lat"], lng=PICKUP["lng"], seconds_ago=20)
    rider_headers = {"Authorization": f"Bearer {access_token(rider.user)}"}
    with connect(server, f"/ws/delivery/{order.pk}/", access_token(order.customer)) as socket:
        frames_until(socket, "status")
        with pytest.raises(TimeoutError):
            socket.recv(timeout=12)

        # when the rider moves
        body = fix(PICKUP["lat"] + 0.0005, PICKUP["lng"], seconds_ago=1)
        response = server.request(
            "POST", "/api/v1/riders/me/location/", json=body, headers=rider_headers
        )
        assert response.status_code == 202, response.text

        # then the same socket still hears it, and no consumer died in between
        assert frames_until(socket, "location", timeout=5)["seq"] == 1
    assert "Exception in ASGI application" not in server.output()


@pytest.mark.checklist("P9.3", "P9.4", "P9.5", "P11.11", "P11.12", "P11.13", "P12.20")
def test_from_sign_in_to_delivered_and_earned_through_the_api_only(server, worker):
    # given a service area (ops' set-up)
    ServiceAreaFactory(area=AREA)

    # a rider signs in through the rider app, is approved by ops, and goes online
    rider_headers = sign_in(server, RIDER_PHONE, "rider")
    assert server.request("GET", "/api/v1/riders/me/", headers=rider_headers).status_code == 200
    call_command("rider_approve", RIDER_PHONE)
    online = server.request("POST", "/api/v1/riders/me/online/", headers=rider_headers)
    assert online.json()["status"] == "online", online.text
    rider_token = rider_headers["Authorization"].removeprefix("Bearer ")

    with connect(server, "/ws/rider/", rider_token) as rider_socket:
        # the rider's app reports its position over its socket: 90 s ago, at the pickup
        rider_socket.send(
            json.dumps({"type": "location", **fix(PICKUP["lat"], PICKUP["lng"], seconds_ago=90)})
        )
        assert frames_until(rider_socket, "location_ack")["latest"] is True

        # a customer signs in and books a cash-on-delivery order
        customer_headers = sign_in(server, CUSTOMER_PHONE, "customer")
        quote = server.request(
            "POST",
            "/api/v1/orders/quote/",
            json={
                "pickup": PICKUP,
                "drop": DROP,
                "package": {"description": "Keys", "weight_grams": 200},
            },
            headers=customer_headers,
        )
        assert quote.status_code == 201, quote.text
        booked = server.request(
            "POST",
            "/api/v1/orders/",
            json={"quote_id": quote.json()["id"], "payment_method": "cod"},
            headers={**customer_headers, "Idempotency-Key": "e2e-1"},
        )
        assert booked.status_code == 201, booked.text
        order = booked.json()
        code = order["delivery_code"]
        customer_token = customer_headers["Authorization"].removeprefix("Bearer ")

        with connect(server, f"/ws/delivery/{order['id']}/", customer_token) as watch:
            assert frames_until(watch, "status")["status"] in {"searching_rider", "rider_assigned"}

            # the worker dispatches: the offer reaches the rider's socket, the rider accepts
            offer = frames_until(rider_socket, "offer", timeout=30, order_id=order["id"])
            assert offer["cash_to_collect_paise"] == order["amount_paise"]
            accepted = server.request(
                "POST", f"/api/v1/riders/offers/{offer['offer_id']}/accept/", headers=rider_headers
            )
            assert accepted.status_code == 200, accepted.text
            assert frames_until(watch, "status", status="rider_assigned")["rider_id"]

            # at the pickup, picked up
            step = f"/api/v1/delivery/{order['id']}/"
            for action, status in (("arrived-pickup", "at_pickup"), ("picked-up", "picked_up")):
                answer = server.request("POST", step + action + "/", headers=rider_headers)
                assert answer.status_code == 200, answer.text
                assert frames_until(watch, "status", status=status)

            # the rider rides to the drop; the customer sees the position move
            rider_socket.send(json.dumps({"type": "location", **fix(DROP["lat"], DROP["lng"])}))
            assert frames_until(rider_socket, "location_ack")["latest"] is True
            moved = frames_until(watch, "location")
            assert (moved["lat"], moved["lng"]) == (DROP["lat"], DROP["lng"])
            tracking = server.request("GET", step, headers=customer_headers).json()
            assert tracking["rider"]["lat"] == DROP["lat"]
            assert tracking["seq"] >= moved["seq"]

            # arrived, and delivered with the code the customer reads out
            answer = server.request("POST", step + "arrived-drop/", headers=rider_headers)
            assert answer.status_code == 200, answer.text
            wrong = server.request(
                "POST",
                step + "deliver/",
                json={"delivery_code": "0000" if code != "0000" else "1111"},
                headers=rider_headers,
            )
            assert wrong.json()["error"]["code"] == "delivery_code_invalid"
            delivered = server.request(
                "POST", step + "deliver/", json={"delivery_code": code}, headers=rider_headers
            )
            assert delivered.status_code == 200, delivered.text
            final = frames_until(watch, "status", status="delivered")
            assert final["seq"] == delivered.json()["seq"]

    # then the rider earned the fixed pay, once, and owes the cash collected
    earnings = server.request("GET", "/api/v1/riders/me/earnings/", headers=rider_headers).json()
    assert earnings["total_paise"] == 5000
    assert earnings["cash_collected_paise"] == order["amount_paise"]
    assert [entry["order_id"] for entry in earnings["results"]] == [order["id"]]
    again = server.request(
        "POST",
        f"/api/v1/delivery/{order['id']}/deliver/",
        json={"delivery_code": code},
        headers=rider_headers,
    )
    assert again.status_code == 409
    assert Earning.objects.filter(order_id=order["id"]).count() == 1

    # and the customer sees a delivered order, the rider is free for the next one
    mine = server.request("GET", f"/api/v1/orders/{order['id']}/", headers=customer_headers).json()
    assert (mine["status"], mine["delivery_code"]) == ("delivered", None)
    assert Rider.objects.get(user__phone=RIDER_PHONE).status == Rider.Status.ONLINE
    assert Order.objects.get(pk=order["id"]).delivery_code_attempts == 1
