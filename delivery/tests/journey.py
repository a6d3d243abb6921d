"""One cash order from sign-in to delivered, through the HTTP and WebSocket API only, as the apps
do it. Shared by the tests that run it against a server process (test_tracking_server) and
against the whole Compose stack (core/tests/test_compose.py); they differ only in how the two
steps outside the API are reached: reading the SMS outbox and ops approving the rider.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
import websockets.sync.client
from django.utils import timezone

from accounts.tests.support import OTP_REQUEST_URL, OTP_VERIFY_URL


@dataclass
class Api:
    base_url: str  # http://host:port
    login_code: Callable[[str], str]  # the newest code texted to a phone
    approve_rider: Callable[[str], None]  # ops' approval of the rider with that phone

    def request(self, method: str, path: str, *, timeout: float = 10.0, **kwargs):
        """One request on a fresh connection, so any worker may answer it."""
        headers = {"Connection": "close", **kwargs.pop("headers", {})}
        with httpx.Client(base_url=self.base_url, timeout=timeout) as client:
            return client.request(method, path, headers=headers, **kwargs)

    def connect(self, path: str, token: str):
        ws_base = self.base_url.replace("http://", "ws://", 1)
        return websockets.sync.client.connect(
            f"{ws_base}{path}?token={token}", origin=self.base_url, open_timeout=10
        )

    def sign_in(self, phone: str, role: str) -> dict[str, str]:
        assert self.request("POST", OTP_REQUEST_URL, json={"phone": phone}).status_code == 202
        verified = self.request(
            "POST",
            OTP_VERIFY_URL,
            json={"phone": phone, "otp": self.login_code(phone), "role": role},
        )
        assert verified.status_code == 200, verified.text
        return {"Authorization": f"Bearer {verified.json()['access']}"}


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


def book_cash_order(request, headers: dict, key: str, *, pickup: dict, drop: dict) -> dict:
    """Quote, then book with cash on delivery under Idempotency-Key `key`; the booked order.
    `request(method, path, **kwargs)` is Api.request or a servers.Server's."""
    package = {"description": "Keys", "weight_grams": 300}
    body = {"pickup": pickup, "drop": drop, "package": package}
    quote = request("POST", "/api/v1/orders/quote/", json=body, headers=headers)
    assert quote.status_code == 201, quote.text
    booked = request(
        "POST",
        "/api/v1/orders/",
        json={"quote_id": quote.json()["id"], "payment_method": "cod"},
        headers={**headers, "Idempotency-Key": key},
    )
    assert booked.status_code == 201, booked.text
    return booked.json()


@dataclass
class Delivered:
    order: dict  # the order as booked
    code: str  # the delivery code the customer read out
    rider_headers: dict[str, str]
    customer_headers: dict[str, str]


def deliver_one_cash_order(
    api: Api, *, rider_phone: str, customer_phone: str, pickup: dict, drop: dict
) -> Delivered:
    """A rider signs in, is approved, goes online; a customer books cash on delivery; the worker
    offers the order to the rider's socket; the rider carries it, watched by the customer's
    socket, and delivers it with the customer's code."""
    rider_headers = api.sign_in(rider_phone, "rider")
    assert api.request("GET", "/api/v1/riders/me/", headers=rider_headers).status_code == 200
    api.approve_rider(rider_phone)
    online = api.request("POST", "/api/v1/riders/me/online/", headers=rider_headers)
    assert online.json()["status"] == "online", online.text
    rider_token = rider_headers["Authorization"].removeprefix("Bearer ")

    with api.connect("/ws/rider/", rider_token) as rider_socket:
        # the rider's app reports its position over its socket: 90 s ago, at the pickup
        rider_socket.send(
            json.dumps({"type": "location", **fix(pickup["lat"], pickup["lng"], seconds_ago=90)})
        )
        assert frames_until(rider_socket, "location_ack")["latest"] is True

        # a customer signs in and books a cash-on-delivery order
        customer_headers = api.sign_in(customer_phone, "customer")
        order = book_cash_order(
            api.request, customer_headers, f"journey-{customer_phone}", pickup=pickup, drop=drop
        )
        code = order["delivery_code"]
        customer_token = customer_headers["Authorization"].removeprefix("Bearer ")

        with api.connect(f"/ws/delivery/{order['id']}/", customer_token) as watch:
            assert frames_until(watch, "status")["status"] in {"searching_rider", "rider_assigned"}

            # the worker dispatches: the offer reaches the rider's socket, the rider accepts
            offer = frames_until(rider_socket, "offer", timeout=30, order_id=order["id"])
            assert offer["cash_to_collect_paise"] == order["amount_paise"]
            accepted = api.request(
                "POST", f"/api/v1/riders/offers/{offer['offer_id']}/accept/", headers=rider_headers
            )
            assert accepted.status_code == 200, accepted.text
            assert frames_until(watch, "status", status="rider_assigned")["rider_id"]

            # at the pickup, picked up
            step = f"/api/v1/delivery/{order['id']}/"
            for action, status in (("arrived-pickup", "at_pickup"), ("picked-up", "picked_up")):
                answer = api.request("POST", step + action + "/", headers=rider_headers)
                assert answer.status_code == 200, answer.text
                assert frames_until(watch, "status", status=status)

            # the rider rides to the drop; the customer sees the position move
            rider_socket.send(json.dumps({"type": "location", **fix(drop["lat"], drop["lng"])}))
            assert frames_until(rider_socket, "location_ack")["latest"] is True
            moved = frames_until(watch, "location")
            assert (moved["lat"], moved["lng"]) == (drop["lat"], drop["lng"])
            tracking = api.request("GET", step, headers=customer_headers).json()
            assert tracking["rider"]["lat"] == drop["lat"]
            assert tracking["seq"] >= moved["seq"]

            # arrived, and delivered with the code the customer reads out
            answer = api.request("POST", step + "arrived-drop/", headers=rider_headers)
            assert answer.status_code == 200, answer.text
            wrong = api.request(
                "POST",
                step + "deliver/",
                json={"delivery_code": "0000" if code != "0000" else "1111"},
                headers=rider_headers,
            )
            assert wrong.json()["error"]["code"] == "delivery_code_invalid"
            delivered = api.request(
                "POST", step + "deliver/", json={"delivery_code": code}, headers=rider_headers
            )
            assert delivered.status_code == 200, delivered.text
            final = frames_until(watch, "status", status="delivered")
            assert final["seq"] == delivered.json()["seq"]
    return Delivered(order, code, rider_headers, customer_headers)
