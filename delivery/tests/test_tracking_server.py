"""Live tracking through the real stack: gunicorn + uvicorn, a Celery worker, Redis, PostGIS.

The server and the worker are separate processes on their own throwaway Redis (broker and
channel layer), using the test database. Nothing here calls a service function: customers and
riders act through the HTTP and WebSocket API only, as the apps do; ops' two steps (the
service area and approving the rider) go through the management command and the ORM, as they
would through the admin.
"""

import time

import pytest
from django.core.management import call_command

from accounts.tests.support import code_from_outbox
from delivery.tests.journey import Api, deliver_one_cash_order, fix, frames_until
from devstack.web import Server
from orders.models import Order
from orders.tests.factories import AREA, PICKUP, OrderFactory, ServiceAreaFactory
from riders.models import Earning, Rider
from riders.tests.factories import access_token, located

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CUSTOMER_PHONE = "+919845011111"
RIDER_PHONE = "+919845022222"
# About 1.5 km south-east of the pickup: a trip a scooter covers in the test's 90 s.
DROP = {"lat": 12.9616, "lng": 77.6046, "address": "Richmond Town"}


def api_for(server: Server) -> Api:
    """The apps' view of the server; the outbox and ops' approval go through this database."""
    return Api(
        server.base_url,
        login_code=code_from_outbox,
        approve_rider=lambda phone: call_command("rider_approve", phone),
    )


def connect(server: Server, path: str, token: str):
    return api_for(server).connect(path, token)


@pytest.mark.checklist("P9.5", "P9.9", "P9.10", "P11.12", "P12.19")
def test_the_customer_sees_the_riders_ping_within_a_second(dev_server):
    # given an order in a rider's hands, and its customer watching over the socket
    order = OrderFactory(status="rider_assigned")
    rider = located(order.rider, lat=PICKUP["lat"], lng=PICKUP["lng"], seconds_ago=20)
    rider_headers = {"Authorization": f"Bearer {access_token(rider.user)}"}

    with connect(dev_server, f"/ws/delivery/{order.pk}/", access_token(order.customer)) as socket:
        hello = frames_until(socket, "status")
        assert (hello["status"], hello["seq"]) == ("rider_assigned", 0)

        latencies = []
        for step in range(1, 6):
            # when the rider's app reports a new position over HTTP
            body = fix(PICKUP["lat"] + step * 0.0005, PICKUP["lng"], seconds_ago=20 - step)
            sent = time.monotonic()
            response = dev_server.request(
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


def test_a_watching_socket_hears_the_rider_again_after_redis_restarts(dev_server, own_redis):
    # given a customer watching an order in a rider's hands, the rider's pings reaching it
    order = OrderFactory(status="rider_assigned")
    rider = located(order.rider, lat=PICKUP["lat"], lng=PICKUP["lng"], seconds_ago=30)
    rider_headers = {"Authorization": f"Bearer {access_token(rider.user)}"}

    def ping(seconds_ago: float, north: float) -> None:
        body = fix(PICKUP["lat"] + north, PICKUP["lng"], seconds_ago=seconds_ago)
        response = dev_server.request(
            "POST", "/api/v1/riders/me/location/", json=body, headers=rider_headers
        )
        assert response.status_code == 202, response.text

    with connect(dev_server, f"/ws/delivery/{order.pk}/", access_token(order.customer)) as socket:
        frames_until(socket, "status")
        ping(20, 0.0002)
        assert frames_until(socket, "location", timeout=5)["seq"] == 1

        # when Redis dies (its data with it) and comes back on the same port
        own_redis.kill()
        own_redis.start()

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
    assert "Exception in ASGI application" not in dev_server.output()


def test_an_idle_socket_outlives_the_channel_layers_blocking_reads(dev_server):
    # given a customer watching an order nothing happens to for 12 s, longer than the channel
    # layer's Redis read timeout (5 s): its listener must wait through it, over and over
    order = OrderFactory(status="rider_assigned")
    rider = located(order.rider, lat=PICKUP["lat"], lng=PICKUP["lng"], seconds_ago=20)
    rider_headers = {"Authorization": f"Bearer {access_token(rider.user)}"}
    with connect(dev_server, f"/ws/delivery/{order.pk}/", access_token(order.customer)) as socket:
        frames_until(socket, "status")
        with pytest.raises(TimeoutError):
            socket.recv(timeout=12)

        # when the rider moves
        body = fix(PICKUP["lat"] + 0.0005, PICKUP["lng"], seconds_ago=1)
        response = dev_server.request(
            "POST", "/api/v1/riders/me/location/", json=body, headers=rider_headers
        )
        assert response.status_code == 202, response.text

        # then the same socket still hears it, and no consumer died in between
        assert frames_until(socket, "location", timeout=5)["seq"] == 1
    assert "Exception in ASGI application" not in dev_server.output()


@pytest.mark.checklist("P9.3", "P9.4", "P9.5", "P11.11", "P11.12", "P11.13", "P12.20")
def test_from_sign_in_to_delivered_and_earned_through_the_api_only(dev_server, dev_worker):
    # given a service area (ops' set-up)
    ServiceAreaFactory(area=AREA)

    # a rider signs in, is approved, goes online, is offered a customer's cash order over
    # the socket and delivers it, the customer watching (delivery/tests/journey.py)
    delivered = deliver_one_cash_order(
        api_for(dev_server),
        rider_phone=RIDER_PHONE,
        customer_phone=CUSTOMER_PHONE,
        pickup=PICKUP,
        drop=DROP,
    )
    order, code = delivered.order, delivered.code
    rider_headers, customer_headers = delivered.rider_headers, delivered.customer_headers

    # then the rider earned the fixed pay, once, and owes the cash collected
    earnings = dev_server.request(
        "GET", "/api/v1/riders/me/earnings/", headers=rider_headers
    ).json()
    assert earnings["total_paise"] == 5000
    assert earnings["cash_collected_paise"] == order["amount_paise"]
    assert [entry["order_id"] for entry in earnings["results"]] == [order["id"]]
    again = dev_server.request(
        "POST",
        f"/api/v1/delivery/{order['id']}/deliver/",
        json={"delivery_code": code},
        headers=rider_headers,
    )
    assert again.status_code == 409
    assert Earning.objects.filter(order_id=order["id"]).count() == 1

    # and the customer sees a delivered order, the rider is free for the next one
    mine = dev_server.request(
        "GET", f"/api/v1/orders/{order['id']}/", headers=customer_headers
    ).json()
    assert (mine["status"], mine["delivery_code"]) == ("delivered", None)
    assert Rider.objects.get(user__phone=RIDER_PHONE).status == Rider.Status.ONLINE
    assert Order.objects.get(pk=order["id"]).delivery_code_attempts == 1
