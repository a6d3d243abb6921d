"""Abuse, tried against a stack in production settings as an outsider would (issue: abuse).

Forged client addresses: the stack's web (gunicorn with uvicorn workers, FORWARDED_ALLOW_IPS at
its default, the loopback proxy) sits behind HAProxy (Debian's package in a container, running
deploy/haproxy/haproxy.cfg, which appends the client's address to X-Forwarded-For). Clients
connect to HAProxy from addresses of their own (127.0.0.2, 127.0.0.3) and write whatever
X-Forwarded-For they like.
"""

import contextlib
import json
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
import websockets.sync.client
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from accounts.models import OtpChallenge, SmsMessage, User
from accounts.tests.support import OTP_REQUEST_URL
from delivery.models import Offer
from delivery.tests.journey import book_cash_order
from devstack import containers
from devstack.stack import start_stack
from devstack.wait import wait_for
from orders.models import Order
from orders.tests.factories import DROP, PICKUP
from orders.tests.support import ORDERS_URL, QUOTE_URL
from proof.conftest import customer, order_for, rider
from proof.haproxy import HAProxy
from riders.models import RiderLocation
from riders.tests.factories import located

pytestmark = pytest.mark.slow

IP_LIMIT = 3  # OTP requests per address per hour, for this stack


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def phone(index: int) -> str:
    return f"+9198450{index:05d}"


def test_a_forged_x_forwarded_for_does_not_change_the_address_the_limits_count(tmp_path):
    print(f"\n[abuse] images:\n{containers.make_compose_standins()}")
    stack = start_stack(
        tmp_path / "stack", worker=False, beat=False, THROTTLE_OTP_REQUEST_IP=f"{IP_LIMIT}/hour"
    )
    haproxy = None
    try:
        haproxy = HAProxy(stack.web.port, stack.web.port)
        url = haproxy.base_url

        def client(address: str) -> httpx.Client:
            transport = httpx.HTTPTransport(local_address=address)
            return httpx.Client(base_url=url, transport=transport, timeout=10)

        def served() -> bool:
            try:
                with client("127.0.0.9") as probe:
                    return probe.get("/health/").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(served, 30, "HAProxy to serve /health/", interval=0.5)

        # when one client asks for codes, claiming a new address in X-Forwarded-For each time
        with client("127.0.0.2") as outsider:
            answers = [
                outsider.post(
                    OTP_REQUEST_URL,
                    json={"phone": phone(index)},
                    headers={"X-Forwarded-For": f"198.51.100.{index}"},
                )
                for index in range(IP_LIMIT + 1)
            ]

        # then the limit counted its own address: the request past it is refused, in the API's
        # error shape with Retry-After, and no code was made or sent for it
        assert [a.status_code for a in answers] == [202] * IP_LIMIT + [429], answers
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "throttled", refused.text
        assert int(refused.headers["Retry-After"]) > 0
        assert not OtpChallenge.objects.filter(phone=phone(IP_LIMIT)).exists()
        assert not SmsMessage.objects.filter(phone=phone(IP_LIMIT)).exists()

        # and it was the client's address, not the proxy's: another client has its own allowance
        with client("127.0.0.3") as neighbour:
            assert neighbour.post(OTP_REQUEST_URL, json={"phone": phone(99)}).status_code == 202
    finally:
        if haproxy is not None:
            print(containers.logs(haproxy.name, 8))
            haproxy.remove()
        stack.stop()


def test_sms_pumping_gets_no_code_abroad_and_stops_at_the_hourly_budget(tmp_path):
    budget = 3
    stack = start_stack(tmp_path / "stack", worker=False, beat=False, SMS_HOURLY_BUDGET=str(budget))
    try:
        # when a script asks for codes for premium numbers abroad (the default: India only)
        abroad = ["+447400123456", "+2348031234567", "+12025550143"]
        answers = [
            stack.web.request("POST", OTP_REQUEST_URL, json={"phone": number}) for number in abroad
        ]

        # then each is refused in the error shape, naming the phone, and nothing is sent
        assert [a.status_code for a in answers] == [400] * len(abroad), answers
        for answer in answers:
            error = answer.json()["error"]
            assert error["code"] == "phone_country_not_served" and "phone" in error["fields"]
        assert not OtpChallenge.objects.exists() and not SmsMessage.objects.exists()

        # when many Indian numbers ask, past the hour's budget
        answers = [
            stack.web.request("POST", OTP_REQUEST_URL, json={"phone": phone(index)})
            for index in range(budget + 2)
        ]

        # then the budget's worth is sent and the rest refused with 503 and a Retry-After
        assert [a.status_code for a in answers] == [202] * budget + [503] * 2, answers
        for refused in answers[budget:]:
            assert refused.json()["error"]["code"] == "sms_budget_spent"
            assert 0 < int(refused.headers["Retry-After"]) <= 3600
        assert SmsMessage.objects.count() == budget

        # and /metrics counts both refusals for the alert
        metrics = stack.web.get("/metrics").text
        assert 'otp_requests_refused_total{reason="country"} 3.0' in metrics
        assert 'otp_requests_refused_total{reason="sms_budget"} 2.0' in metrics
    finally:
        stack.stop()


def test_one_account_cannot_hold_more_than_three_live_orders_nor_quote_without_end(stack):
    # given a customer of the running stack (production settings and limits)
    person = customer()
    booked = [
        book_cash_order(stack.web.request, person.headers, f"abuse-{i}", pickup=PICKUP, drop=DROP)
        for i in range(3)
    ]
    body = {"pickup": PICKUP, "drop": DROP, "package": {"description": "Keys", "weight_grams": 1}}

    # when it books a fourth while the three are waiting for riders
    quote = stack.web.request("POST", QUOTE_URL, json=body, headers=person.headers)
    refused = stack.web.request(
        "POST",
        ORDERS_URL,
        json={"quote_id": quote.json()["id"], "payment_method": "cod"},
        headers=person.headers,
    )

    # then it is refused in the error shape with a Retry-After, and no order was made
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_live_orders"
    assert refused.headers["Retry-After"] == "60"
    assert Order.objects.filter(customer=person.user).count() == len(booked)

    # when it keeps asking for quotes in the same minute
    answers = [
        stack.web.request("POST", QUOTE_URL, json=body, headers=person.headers).status_code
        for _ in range(30)
    ]

    # then 30 quotes a minute were given in all (4 already), and the rest refused
    assert answers == [201] * 26 + [429] * 4, answers


def test_a_phone_that_is_customer_and_rider_is_never_offered_its_own_order(stack):
    # given one phone signed in both as a customer and as a rider, online at the pickup, and
    # another rider a little farther away
    both = rider()
    User.objects.filter(pk=both.user.pk).update(is_customer=True)
    located(both.rider, lat=PICKUP["lat"], lng=PICKUP["lng"])
    other = rider()
    located(other.rider, lat=PICKUP["lat"] + 0.004, lng=PICKUP["lng"])

    # when that phone books a delivery from where it stands
    order = book_cash_order(stack.web.request, both.headers, "self-1", pickup=PICKUP, drop=DROP)

    # then dispatch offers it to the other rider, never to the phone that booked it
    def offered_to(person) -> list[str]:
        listed = stack.web.request("GET", "/api/v1/riders/me/offers/", headers=person.headers)
        assert listed.status_code == 200, listed.text
        return [offer["order_id"] for offer in listed.json()]

    wait_for(lambda: order["id"] in offered_to(other), 30, "the other rider's offer")
    assert order["id"] not in offered_to(both)
    assert not Offer.objects.filter(order_id=order["id"], rider=both.rider).exists()
    # and quoting a trip to the next door is refused
    next_door = {**PICKUP, "lat": PICKUP["lat"] + 0.0005, "address": "Next door"}
    body = {
        "pickup": PICKUP,
        "drop": next_door,
        "package": {"description": "Keys", "weight_grams": 1},
    }
    quote = stack.web.request("POST", QUOTE_URL, json=body, headers=both.headers)
    assert quote.status_code == 400 and quote.json()["error"]["code"] == "trip_too_short"


def test_a_burst_of_fixes_is_stored_one_a_second_and_the_rest_refused(stack):
    # given a rider on the running stack
    person = rider()

    # when its app sends 300 fixes in one burst, each stamped with the moment it was sent
    answers = Counter()
    with httpx.Client(base_url=stack.base_url, headers=person.headers, timeout=10) as client:
        for _ in range(300):
            body = {"lat": PICKUP["lat"], "lng": PICKUP["lng"], "recorded_at": now_iso()}
            answers[client.post("/api/v1/riders/me/location/", json=body).status_code] += 1

    # then about one a second of the burst was stored, the rest refused with 429
    stored = RiderLocation.objects.filter(rider=person.rider).count()
    print(f"\n[abuse] burst of 300 fixes: {dict(answers)}, {stored} stored")
    assert answers[202] == stored and answers[429] == 300 - stored, answers
    assert 1 <= stored <= 60, stored  # the burst takes seconds, not minutes
    metrics = stack.web.get("/metrics").text
    assert 'rider_fixes_refused_total{reason="too_frequent"}' in metrics


def test_a_cancellation_once_the_rider_is_at_the_pickup_is_recorded_as_late(stack):
    # given a customer's cash order, accepted by a rider who has reached the pickup
    courier = rider()
    located(courier.rider, lat=PICKUP["lat"], lng=PICKUP["lng"])
    person = customer()
    order = book_cash_order(stack.web.request, person.headers, "late-1", pickup=PICKUP, drop=DROP)

    def offers() -> list[dict]:
        listed = stack.web.request("GET", "/api/v1/riders/me/offers/", headers=courier.headers)
        return [offer for offer in listed.json() if offer["order_id"] == order["id"]]

    wait_for(offers, 30, "the rider's offer")
    offer_id = offers()[0]["id"]
    accept = f"/api/v1/riders/offers/{offer_id}/accept/"
    assert stack.web.request("POST", accept, headers=courier.headers).status_code == 200
    step = f"/api/v1/delivery/{order['id']}/arrived-pickup/"
    assert stack.web.request("POST", step, headers=courier.headers).status_code == 200

    # when the customer cancels
    cancel = f"{ORDERS_URL}{order['id']}/cancel/"
    answer = stack.web.request("POST", cancel, json={"reason": "No"}, headers=person.headers)

    # then it is cancelled, and marked late for a fee, not silently free
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["cancelled_late"]) == ("cancelled", True)
    assert Order.objects.get(pk=order["id"]).cancelled_late is True


def test_one_account_cannot_open_sockets_without_end(stack):
    # given a customer following a live order, with the cap's worth of tracking sockets open
    # (production settings: WS_MAX_SOCKETS_PER_USER, 20)
    person = customer()
    order = order_for(person)
    url = stack.ws_url(f"/ws/delivery/{order.pk}/", person.token)
    cap = settings.WS_MAX_SOCKETS_PER_USER
    with contextlib.ExitStack() as held:

        def open_socket():
            socket = held.enter_context(websockets.sync.client.connect(url, open_timeout=10))
            return socket, json.loads(socket.recv(timeout=10))

        sockets = [open_socket() for _ in range(cap)]
        assert all(first["status"] == "searching_rider" for _, first in sockets)

        # when it opens one more
        with (
            websockets.sync.client.connect(url, open_timeout=10) as extra,
            pytest.raises(ConnectionClosed) as closed,
        ):
            extra.recv(timeout=10)

        # then that one is closed with 4429 before anything is sent, and the others stay open
        assert closed.value.rcvd.code == 4429
        assert sockets[0][0].ping().wait(5)

        # when one of the open ones is closed, a new one may open
        sockets[0][0].close()
        first = wait_for(lambda: _first_frame(url), 10, "a socket once one closed")
        assert first["status"] == "searching_rider"


def _first_frame(url: str) -> dict | None:
    """The socket's first frame, or None when it is refused."""
    with websockets.sync.client.connect(url, open_timeout=10) as socket:
        try:
            return json.loads(socket.recv(timeout=10))
        except ConnectionClosed:
            return None
