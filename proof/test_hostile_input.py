"""Hostile input against the live stack: what a broken or malicious client can send.

Malformed and oversized WebSocket frames on both socket paths, huge and deeply nested HTTP
bodies, wrong content types, odd unicode, SQL-looking strings, forged Razorpay webhooks and bad
tokens. Each answer must be a 4xx (or an error frame, or a close code), never a 500 or a dead
worker; what is accepted must be stored as sent and read back identical; nothing a forged
request touches may change. After each group the server still answers /health/, and at the
end its logs hold no error record and its access log no 5xx.
"""

import base64
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
import websockets.sync.client
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from websockets.exceptions import ConnectionClosed, InvalidStatus

from config.workers import UvicornWorker
from delivery.consumers import MAX_FRAME_BYTES
from devstack.stack import LogWindow, Stack
from orders.models import Order, OrderStatus, PaymentStatus, Quote
from orders.tests.factories import DROP, PICKUP
from payments.models import Payment, WebhookEvent
from payments.tests.fake_razorpay import WEBHOOK_SECRET, webhook_body, webhook_signature
from proof.conftest import assert_on_test_database, customer, order_for, rider
from riders.models import Rider
from riders.tests.support import spaced_fix

pytestmark = pytest.mark.slow

# Frames past this close the socket at uvicorn (1009) before the app sees them.
WS_MAX_SIZE = UvicornWorker.CONFIG_KWARGS["ws_max_size"]
FIVE_MB = 5 * 1024 * 1024
FAST_SECONDS = 5.0

SQL_LIKE = ["' OR 1=1 --", "'; DROP TABLE orders_order; --", '" OR ""="', "1; SELECT pg_sleep(5)"]
ODD_TEXT = {
    "rtl_override": "\u202egnp.exe\u202c receipt",
    "emoji": "🛵 📦 👩🏽‍🚀 🇮🇳",
    "combining": "Z\u0351\u0358a\u0316\u0324l\u0327g\u0335o",
    "zero_width": "a\u200bb\u200dc\ufeffd",
    "cjk_and_arabic": "配達 توصيل डिलीवरी",
    "sql_or": SQL_LIKE[0],
    "sql_drop": SQL_LIKE[1],
    "html": "<script>alert(1)</script>",
    "noncharacter": "\ufffe\uffff",
}


# --- Helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log_window(stack) -> LogWindow:
    return stack.log_window()


@pytest.fixture
def healthy_after(stack, log_window):
    """Each test leaves the server answering /health/."""
    yield
    assert stack.healthy(), "the server stopped answering /health/"


@pytest.fixture
def people(stack, db_access, healthy_after):
    assert_on_test_database(stack)
    buyer = customer()
    courier = rider()
    return buyer, courier


def ws_connect(stack: Stack, path: str, token: str | None, **kwargs):
    """A socket on `path` (sent as given) with `token` URL-encoded into the query."""
    url = stack.ws_url(path, None if token is None else quote(token, safe=""))
    return websockets.sync.client.connect(url, origin=stack.origin, open_timeout=10, **kwargs)


def receive(socket, timeout: float = 10) -> dict:
    return json.loads(socket.recv(timeout=timeout))


def close_code(socket, timeout: float = 10) -> int | None:
    """Reads until the server closes the socket; the code it closed with."""
    with pytest.raises(ConnectionClosed) as closed:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            socket.recv(timeout=deadline - time.monotonic())
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


def fix_frame(**changes) -> dict:
    """A valid fix, spaced from the previous one as a rider's fixes must be (spaced_fix)."""
    frame = {"type": "location", **spaced_fix((PICKUP["lat"], PICKUP["lng"]))}
    frame.update(changes)
    return frame


def assert_error_shape(response, status: int | tuple[int, ...]) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- Malformed WebSocket frames ---------------------------------------------------------------

RIDER_BAD_FRAMES = [
    # (what, frame sent, error code answered)
    ("binary", b"\x00\x01\x02 binary", "unsupported_frame"),
    ("binary JSON", json.dumps(fix_frame()).encode(), "unsupported_frame"),
    ("not JSON", "not json at all", "invalid_json"),
    ("truncated JSON", '{"type": "location", "lat": ', "invalid_json"),
    ("empty text", "", "invalid_json"),
    ("JSON array", "[1, 2, 3]", "invalid_frame"),
    ("JSON string", '"location"', "invalid_frame"),
    ("JSON null", "null", "invalid_frame"),
    ("JSON number", "12345678901234567890", "invalid_frame"),
    ("missing type", '{"lat": 12.97, "lng": 77.59}', "invalid_frame"),
    ("numeric type", '{"type": 5}', "invalid_frame"),
    ("object type", '{"type": {"type": "location"}}', "invalid_frame"),
    ("unknown type", '{"type": "teleport"}', "unknown_type"),
    ("NUL in type", '{"type": "location\\u0000"}', "unknown_type"),
    ("lone surrogate type", '{"type": "\\ud800"}', "unknown_type"),
    ("SQL type", json.dumps({"type": SQL_LIKE[1]}), "unknown_type"),
    ("location without fields", '{"type": "location"}', "invalid"),
    (
        "infinite lat",
        '{"type": "location", "lat": 1e999, "lng": 77.59, "recorded_at": "x"}',
        "invalid",
    ),
    ("NaN lat", '{"type": "location", "lat": NaN, "lng": 77.59, "recorded_at": "x"}', "invalid"),
    (
        "-Infinity lng",
        '{"type": "location", "lat": 12.9, "lng": -Infinity, "recorded_at": "x"}',
        "invalid",
    ),
    ("NaN string", json.dumps(fix_frame(lat="NaN")), "invalid"),
    ("Infinity string", json.dumps(fix_frame(lng="Infinity")), "invalid"),
    ("400-digit integer", json.dumps(fix_frame(lat=10**400)), "invalid"),
    ("1001-char numeric string", json.dumps(fix_frame(lat="1" * 1001)), "invalid"),
    ("list lat", json.dumps(fix_frame(lat=[12.9])), "invalid"),
    ("bool lat", json.dumps(fix_frame(lat=True)), "invalid"),
    ("lat out of range", json.dumps(fix_frame(lat=91)), "invalid"),
    ("naive time", json.dumps(fix_frame(recorded_at="2026-01-31T10:15:00")), "invalid"),
    (
        "year 9999",  # out of range once in the service's time zone
        json.dumps(fix_frame(recorded_at="9999-12-31T23:59:59Z")),
        "invalid",
    ),
    ("year 1", json.dumps(fix_frame(recorded_at="0001-01-01T00:00:00+14:00")), "invalid"),
    (
        "next century",
        json.dumps(fix_frame(recorded_at="2099-01-01T00:00:00Z")),
        "location_from_future",
    ),
    ("years ago", json.dumps(fix_frame(recorded_at="2020-01-01T00:00:00Z")), "location_stale"),
    ("NUL time", json.dumps(fix_frame(recorded_at="2026\u0000-01-31")), "invalid"),
    ("SQL time", json.dumps(fix_frame(recorded_at=SQL_LIKE[0])), "invalid"),
    ("nested lat", '{"type": "location", "lat": ' + nested(1500) + "}", "invalid_json"),
    ("deeply nested JSON", nested(2000), "invalid_json"),
    (
        "600 levels of objects: parsed, then refused by the fields",
        '{"type": "location", "x": ' + '{"a":' * 600 + "1" + "}" * 601,
        "invalid",
    ),
]


def test_the_rider_socket_answers_every_malformed_frame_and_stays_open(stack, people):
    _, courier = people
    wrong = []
    with ws_connect(stack, "/ws/rider/", courier.token) as socket:
        for what, frame, code in RIDER_BAD_FRAMES:
            assert len(frame) <= MAX_FRAME_BYTES, what  # all under the limit: parsed, not sized
            socket.send(frame)
            try:
                answer = receive(socket)
            except ConnectionClosed as closed:
                pytest.fail(f"{what}: the server closed the socket ({closed.rcvd}); {wrong}")
            if answer.get("type") != "error" or answer.get("code") != code:
                wrong.append((what, code, answer))
        # Still open and still working: a good fix is stored and acknowledged.
        socket.send(json.dumps(fix_frame()))
        ack = receive(socket)
    assert wrong == []
    assert ack["type"] == "location_ack", ack


TRACKING_FRAMES = [
    b"\xff\xfe binary",
    "not json",
    nested(2000),
    '{"type": "status", "status": "delivered"}',
    json.dumps({"type": "location", "lat": 0, "lng": 0}),
    "x" * (MAX_FRAME_BYTES + 1),
]


def test_the_tracking_socket_answers_every_client_frame_read_only_and_stays_open(stack, people):
    buyer, _ = people
    order = order_for(buyer, "searching_rider")
    path = f"/ws/delivery/{order.pk}/"
    with ws_connect(stack, path, buyer.token) as socket:
        first = receive(socket)
        assert first["type"] == "status" and first["status"] == "searching_rider", first
        for frame in TRACKING_FRAMES:
            socket.send(frame)
            answer = receive(socket)
            assert answer["type"] == "error" and answer["code"] == "read_only", (frame[:40], answer)
    order.refresh_from_db()
    assert order.status == OrderStatus.SEARCHING_RIDER  # no frame acted on the order


# --- Oversized WebSocket frames ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "frame"),
    [
        ("one byte over", "x" * (MAX_FRAME_BYTES + 1)),
        ("multibyte: few characters, many bytes", "é" * (MAX_FRAME_BYTES // 2 + 1)),
        ("a valid fix padded past the limit", json.dumps(fix_frame(pad="x" * MAX_FRAME_BYTES))),
        ("binary over the limit", b"\x00" * (MAX_FRAME_BYTES + 1)),
    ],
)
def test_a_frame_just_over_the_limit_is_answered_and_the_socket_stays_open(
    stack, people, what, frame
):
    _, courier = people
    with ws_connect(stack, "/ws/rider/", courier.token, compression=None) as socket:
        socket.send(frame)
        answer = receive(socket)
        expected = "unsupported_frame" if isinstance(frame, bytes) else "frame_too_large"
        assert answer == {"type": "error", "code": expected, "message": answer["message"]}
        socket.send(json.dumps(fix_frame()))
        assert receive(socket)["type"] == "location_ack"


@pytest.mark.parametrize("path_kind", ["rider", "tracking"])
@pytest.mark.parametrize(
    "size", [WS_MAX_SIZE - 1024, WS_MAX_SIZE + 1, 1024 * 1024, 17 * 1024 * 1024]
)
def test_a_huge_frame_is_refused_without_hurting_the_server(stack, people, path_kind, size):
    """Under ws_max_size the app answers with an error frame; over it uvicorn closes with 1009
    (or, while a frame is still arriving, drops the connection). Either way the worker lives."""
    buyer, courier = people
    if path_kind == "rider":
        path, token, expected = "/ws/rider/", courier.token, "frame_too_large"
    else:
        path, token, expected = f"/ws/delivery/{order_for(buyer).pk}/", buyer.token, "read_only"
    started = time.monotonic()
    with ws_connect(stack, path, token, compression=None, close_timeout=5) as socket:
        if path_kind == "tracking":
            receive(socket)  # the current status comes first
        try:
            socket.send("x" * size)
            answer = receive(socket, timeout=15)
        except ConnectionClosed as closed:
            assert size > WS_MAX_SIZE, f"a {size}-byte frame closed the socket: {closed}"
            if closed.rcvd is not None:
                assert closed.rcvd.code == 1009, closed  # message too big
        except OSError as error:  # reset while the client was still sending
            assert size > WS_MAX_SIZE, f"a {size}-byte frame broke the connection: {error}"
        else:
            assert size <= WS_MAX_SIZE, f"a {size}-byte frame over ws_max_size reached the app"
            assert answer["type"] == "error" and answer["code"] == expected, answer
            socket.send(json.dumps(fix_frame()))  # and the socket is still open
            assert receive(socket)["type"] in {"location_ack", "error"}
    assert time.monotonic() - started < 20
    assert stack.healthy()
    with ws_connect(stack, "/ws/rider/", courier.token) as socket:  # a new socket works at once
        socket.send(json.dumps(fix_frame()))
        assert receive(socket)["type"] == "location_ack"


# --- Huge, deep and strangely typed HTTP bodies -----------------------------------------------


def quote_body(**place_changes) -> dict:
    pickup = {**{key: PICKUP[key] for key in ("lat", "lng", "address")}, **place_changes}
    return {
        "pickup": pickup,
        "drop": {key: DROP[key] for key in ("lat", "lng", "address")},
        "package": {"description": "Keys", "weight_grams": 300},
    }


def location_body(**changes) -> dict:
    frame = fix_frame(**changes)
    frame.pop("type")
    return frame


@pytest.mark.parametrize(
    ("path", "body_of"),
    [
        ("/api/v1/orders/quote/", lambda: quote_body(address="x" * FIVE_MB)),
        ("/api/v1/riders/me/location/", lambda: location_body(pad="x" * FIVE_MB)),
        ("/api/v1/auth/me/", lambda: {"name": "x" * FIVE_MB}),
        ("/api/v1/auth/otp/request/", lambda: {"phone": "9" * FIVE_MB}),
        ("/api/v1/payments/razorpay/webhook/", lambda: {"event": "x" * FIVE_MB}),
    ],
)
def test_a_five_megabyte_body_is_refused_fast(stack, people, path, body_of):
    buyer, courier = people
    person = courier if "riders" in path else buyer
    content = json.dumps(body_of()).encode()
    assert len(content) > FIVE_MB
    method = "PATCH" if path == "/api/v1/auth/me/" else "POST"
    started = time.monotonic()
    with stack.client(person.token) as client:
        response = client.request(
            method, path, content=content, headers={"Content-Type": "application/json"}
        )
    elapsed = time.monotonic() - started
    # Past DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), before any field is looked at; not the 400
    # Django answers by itself, which it also logs at ERROR as a security event.
    assert assert_error_shape(response, 413)["code"] == "payload_too_large"
    assert elapsed < FAST_SECONDS, elapsed


def bytes_written(stack: Stack) -> int:
    """What the web's processes (gunicorn and its workers) have written so far, to any file or
    socket: /proc's wchar, which also counts a temporary file that was unlinked at once."""
    pids = [stack.web.process.pid]
    children = Path(f"/proc/{pids[0]}/task/{pids[0]}/children").read_text().split()
    pids += [int(child) for child in children]
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                total += int(line.split()[1])
    return total


@pytest.mark.parametrize(
    "path",
    ["/api/v1/orders/quote/", "/api/v1/riders/me/location/", "/api/v1/auth/otp/request/"],
)
def test_an_endless_chunked_body_is_cut_off_in_memory(stack, people, path):
    """A body with no Content-Length (chunked) is read only to the limit: 413, and nothing of it
    is written anywhere. Django alone spools the whole body to a temporary file first, which
    spills to disk past 2.5 MB, whatever its size."""
    buyer, courier = people
    person = courier if "riders" in path else buyer
    sent = 0

    def body():
        nonlocal sent
        chunk = b" " * 65536
        while sent < 10 * FIVE_MB:
            sent += len(chunk)
            yield chunk

    before = bytes_written(stack)
    with stack.client(person.token) as client:
        response = client.post(path, content=body(), headers={"Content-Type": "application/json"})
    assert assert_error_shape(response, 413)["code"] == "payload_too_large"
    written = bytes_written(stack) - before
    assert written < settings.DATA_UPLOAD_MAX_MEMORY_SIZE, (written, sent)


def test_a_chunked_body_within_the_limit_is_read(stack, people):
    """Without a Content-Length, DRF read no body at all: every field was "required"."""
    buyer, _ = people
    content = json.dumps(quote_body()).encode()
    with stack.client(buyer.token) as client:
        response = client.post(
            "/api/v1/orders/quote/",
            content=iter([content[:50], content[50:]]),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 201, response.text
    assert response.json()["distance_m"] > 0


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/api/v1/orders/quote/", nested(100_000)),
        ("/api/v1/orders/quote/", '{"pickup": ' + nested(5000) + "}"),
        ("/api/v1/riders/me/location/", nested(100_000)),
        ("/api/v1/riders/me/location/", '{"lat": ' + nested(5000) + "}"),
        ("/api/v1/riders/me/location/", '{"lat": 1' + "0" * 5000 + ', "lng": 1}'),
        ("/api/v1/orders/quote/", '{"package": {"weight_grams": 1' + "0" * 5000 + "}}"),
        ("/api/v1/auth/me/", '{"name": ' + '{"a": ' * 3000 + "1" + "}" * 3001),
        ("/api/v1/auth/otp/verify/", '{"otp": ' + nested(3000) + "}"),
        ("/api/v1/orders/quote/", '{"pickup": NaN, "drop": Infinity}'),
        ("/api/v1/riders/me/location/", '{"lat": NaN, "lng": -Infinity, "recorded_at": "x"}'),
        ("/api/v1/orders/quote/", "\xff\xfe not utf-8"),
        ("/api/v1/riders/me/location/", b"\xff\xfe\x00 not utf-8"),
    ],
)
def test_deep_or_absurd_json_is_a_400(stack, people, path, content):
    buyer, courier = people
    person = courier if "riders" in path else buyer
    method = "PATCH" if path == "/api/v1/auth/me/" else "POST"
    data = content.encode("latin-1") if isinstance(content, str) else content
    with stack.client(person.token) as client:
        response = client.request(
            method, path, content=data, headers={"Content-Type": "application/json"}
        )
    assert_error_shape(response, 400)


WRONG_CONTENT_TYPES = {
    "text/plain": lambda body: (json.dumps(body).encode(), "text/plain"),
    "form": lambda body: (b"lat=12.97&lng=77.59", "application/x-www-form-urlencoded"),
    "multipart": lambda body: (
        b'--xyz\r\nContent-Disposition: form-data; name="lat"\r\n\r\n12.97\r\n--xyz--\r\n',
        "multipart/form-data; boundary=xyz",
    ),
    "xml": lambda body: (b"<location><lat>12.97</lat></location>", "application/xml"),
    "none": lambda body: (json.dumps(body).encode(), None),
}


@pytest.mark.parametrize("kind", sorted(WRONG_CONTENT_TYPES))
@pytest.mark.parametrize(
    "path", ["/api/v1/orders/quote/", "/api/v1/riders/me/location/", "/api/v1/auth/me/"]
)
def test_a_body_that_is_not_declared_json_is_refused(stack, people, kind, path):
    buyer, courier = people
    person = courier if "riders" in path else buyer
    body = {"/api/v1/orders/quote/": quote_body(), "/api/v1/auth/me/": {"name": "Typed"}}.get(
        path, location_body()
    )
    content, content_type = WRONG_CONTENT_TYPES[kind](body)
    headers = {"Content-Type": content_type} if content_type else {}
    method = "PATCH" if path == "/api/v1/auth/me/" else "POST"
    with stack.client(person.token) as client:
        response = client.request(method, path, content=content, headers=headers)
    assert_error_shape(response, (400, 415))
    # Nothing was read from it: no name set, no quote made, no position stored.
    buyer.user.refresh_from_db()
    courier.rider.refresh_from_db()
    assert buyer.user.name != "Typed"
    assert not Quote.objects.filter(customer=buyer.user).exists()
    assert courier.rider.last_location is None


# --- Odd unicode and SQL-looking strings, stored as sent ---------------------------------------


@pytest.mark.parametrize("kind", sorted(ODD_TEXT))
def test_odd_text_is_stored_as_sent_and_read_back_identical(stack, people, kind):
    buyer, courier = people
    text = ODD_TEXT[kind]
    with stack.client(buyer.token) as client:
        me = client.patch("/api/v1/auth/me/", json={"name": text})
        assert me.status_code == 200, me.text
        assert client.get("/api/v1/auth/me/").json()["name"] == text
        quote = client.post("/api/v1/orders/quote/", json=quote_body(address=text))
        assert quote.status_code == 201, quote.text
        order = client.post(
            "/api/v1/orders/",
            json={"quote_id": quote.json()["id"], "payment_method": "cod", "notes": text},
            headers={"Idempotency-Key": f"odd-{kind}"},
        )
        assert order.status_code == 201, order.text
        detail = client.get(f"/api/v1/orders/{order.json()['id']}/").json()
        assert detail["pickup"]["address"] == text
        assert detail["notes"] == text
        cancelled = client.post(
            f"/api/v1/orders/{order.json()['id']}/cancel/", json={"reason": text}
        )
        assert cancelled.status_code == 200, cancelled.text
    stored = Order.objects.get(pk=order.json()["id"])
    assert stored.notes == text and stored.quote.pickup_address == text
    assert stored.events.filter(reason=text).exists()
    with stack.client(courier.token) as client:
        profile = client.patch("/api/v1/riders/me/", json={"name": text})
        assert profile.status_code == 200, profile.text
        assert client.get("/api/v1/riders/me/").json()["name"] == text


REFUSED_TEXT = {
    "NUL": "before\u0000after",
    "lone surrogate": "\ud800",
    "low surrogate": "x\udfffy",
    "10k characters": "ą" * 10_000,
}


def _raw_json(value: dict) -> bytes:
    """JSON with escapes kept as escapes: a lone surrogate arrives as the six characters \\ud800."""
    return json.dumps(value, ensure_ascii=True).encode()


@pytest.mark.parametrize("kind", sorted(REFUSED_TEXT))
def test_text_that_cannot_be_stored_is_a_400_everywhere(stack, people, kind):
    buyer, courier = people
    text = REFUSED_TEXT[kind]
    searching = order_for(buyer, "searching_rider")
    carried = order_for(buyer, "at_pickup", carrier=courier)
    delivered = order_for(buyer, "delivered")
    targets = [
        (buyer, "PATCH", "/api/v1/auth/me/", {"name": text}),
        (buyer, "POST", "/api/v1/orders/quote/", quote_body(address=text)),
        (buyer, "POST", f"/api/v1/orders/{searching.pk}/cancel/", {"reason": text}),
        (buyer, "POST", f"/api/v1/orders/{delivered.pk}/rating/", {"stars": 5, "comment": text}),
        (buyer, "POST", "/api/v1/auth/otp/request/", {"phone": text}),
        (courier, "PATCH", "/api/v1/riders/me/", {"name": text}),
        (courier, "POST", f"/api/v1/delivery/{carried.pk}/fail/", {"reason": text}),
        (courier, "POST", f"/api/v1/delivery/{carried.pk}/deliver/", {"delivery_code": text}),
        (
            buyer,
            "POST",
            "/api/v1/payments/razorpay/verify/",
            {"razorpay_order_id": text, "razorpay_payment_id": "pay_x", "razorpay_signature": "s"},
        ),
    ]
    failures = []
    for person, method, path, body in targets:
        with stack.client(person.token) as client:
            response = client.request(
                method, path, content=_raw_json(body), headers={"Content-Type": "application/json"}
            )
        if response.status_code != 400:
            failures.append((method, path, response.status_code, response.text[:200]))
    assert failures == []
    searching.refresh_from_db()
    carried.refresh_from_db()
    assert searching.status == OrderStatus.SEARCHING_RIDER
    assert carried.status == OrderStatus.AT_PICKUP


def test_a_vehicle_number_that_grows_when_uppercased_is_refused_not_a_500(stack, people):
    _, courier = people
    Rider.objects.filter(pk=courier.rider.pk).update(approved=False)  # may change its vehicle
    with stack.client(courier.token) as client:
        # 20 characters, within max_length; uppercased ("ß" -> "SS", "ﬃ" -> "FFI") it is 40.
        for number in ["ß" * 20, "ﬃ" * 10]:
            response = client.patch("/api/v1/riders/me/", json={"vehicle_number": number})
            error = assert_error_shape(response, 400)
            assert "vehicle_number" in error.get("fields", {}), error
    courier.rider.refresh_from_db()
    assert courier.rider.vehicle_number.startswith("KA")


@pytest.mark.parametrize("text", SQL_LIKE)
@pytest.mark.checklist("P10.3")
def test_sql_looking_parameters_are_refused_or_treated_as_data(stack, people, text):
    buyer, courier = people
    order = order_for(buyer, "searching_rider")
    with stack.client(courier.token) as client:
        for query in [{"from": text}, {"to": text}, {"from": "2026-01-01", "to": text}]:
            response = client.get("/api/v1/riders/me/earnings/", params=query)
            error = assert_error_shape(response, 400)
            assert set(error["fields"]) <= {"from", "to"}, error
        assert_error_shape(client.get("/api/v1/riders/me/earnings/", params={"page": text}), 404)
        assert_error_shape(client.post(f"/api/v1/riders/offers/{text}/accept/"), 404)
    with stack.client(buyer.token) as client:
        assert_error_shape(client.get("/api/v1/orders/", params={"page": text}), 404)
        for path in [
            f"/api/v1/orders/{text}/",
            f"/api/v1/orders/{order.pk}' OR '1'='1/",
            f"/api/v1/orders/{text}/cancel/",
            f"/api/v1/delivery/{text}/",
        ]:
            assert_error_shape(client.request("GET" if "cancel" not in path else "POST", path), 404)
        phone = client.post("/api/v1/auth/otp/request/", json={"phone": text})
        assert_error_shape(phone, 400)
        # As data: the key is any printable string, kept verbatim for the replay.
        priced = client.post("/api/v1/orders/quote/", json=quote_body(address=text)).json()
        made = client.post(
            "/api/v1/orders/",
            json={"quote_id": priced["id"], "payment_method": "cod", "notes": text},
            headers={"Idempotency-Key": text},
        )
        again = client.post(
            "/api/v1/orders/",
            json={"quote_id": priced["id"], "payment_method": "cod", "notes": text},
            headers={"Idempotency-Key": text},
        )
        assert (made.status_code, again.status_code) == (201, 200), (made.text, again.text)
        assert made.json()["id"] == again.json()["id"]
        assert again.json()["notes"] == text and again.json()["pickup"]["address"] == text
    with (
        pytest.raises(InvalidStatus) as refused,
        ws_connect(stack, f"/ws/delivery/{quote(text, safe='')}/", buyer.token),
    ):
        pass
    assert refused.value.response.status_code == 403  # refused at the handshake: no such route
    # The tables are all still there, rows intact.
    assert Order.objects.filter(pk=order.pk, status=OrderStatus.SEARCHING_RIDER).exists()
    assert Order.objects.filter(customer=buyer.user).count() == 2


# --- Forged Razorpay webhooks -----------------------------------------------------------------

WEBHOOK_URL = "/api/v1/payments/razorpay/webhook/"


@pytest.fixture
def pending_payment(stack, people):
    """An order waiting for a Razorpay payment, with its Razorpay order made through the API."""
    buyer, _ = people
    order = order_for(buyer, "payment_pending", payment_method="razorpay")
    with stack.client(buyer.token) as client:
        made = client.post("/api/v1/payments/razorpay/order/", json={"order_id": str(order.pk)})
    assert made.status_code == 200, made.text
    return order, made.json()["razorpay_order_id"]


def _captured_event(razorpay_order_id: str, amount: int) -> bytes:
    return webhook_body(
        "payment.captured",
        payment={
            "id": f"pay_forged{uuid.uuid4().hex[:10]}",
            "order_id": razorpay_order_id,
            "amount": amount,
            "currency": "INR",
            "status": "captured",
        },
    )


def _forgeries(razorpay_order_id: str, amount: int) -> list[tuple[str, bytes, dict]]:
    real = _captured_event(razorpay_order_id, amount)
    other = webhook_body("refund.processed", refund={"id": "rfnd_x"})
    deep = ('{"event": "payment.captured", "payload": ' + nested(5000) + "}").encode()
    signed = lambda body: {"X-Razorpay-Signature": webhook_signature(body)}  # noqa: E731
    return [
        ("bad signature", real, {"X-Razorpay-Signature": "0" * 64}),
        ("no signature", real, {}),
        ("empty signature", real, {"X-Razorpay-Signature": ""}),
        ("another secret", real, {"X-Razorpay-Signature": webhook_signature(real, "guess")}),
        ("another body's signature", real, signed(other)),
        ("signature with the body's tail cut", real, signed(real[:-1])),
        ("non-ASCII signature", real, {"X-Razorpay-Signature": "é" * 64}),
        ("SQL signature", real, {"X-Razorpay-Signature": SQL_LIKE[1]}),
        ("signed, not JSON", b"event=payment.captured", signed(b"event=payment.captured")),
        ("signed, empty", b"", signed(b"")),
        ("signed, JSON array", b"[1, 2]", signed(b"[1, 2]")),
        ("signed, no event", b'{"payload": {}}', signed(b'{"payload": {}}')),
        ("signed, numeric event", b'{"event": 5}', signed(b'{"event": 5}')),
        ("signed, deeply nested", deep, signed(deep)),
        ("signed, invalid UTF-8", b'{"event": "\xff\xfe"}', signed(b'{"event": "\xff\xfe"}')),
    ]


def test_forged_webhooks_are_400_and_change_nothing(stack, people, pending_payment):
    order, razorpay_order_id = pending_payment
    before = (WebhookEvent.objects.count(), list(Payment.objects.values_list("status", flat=True)))
    wrong = []
    with stack.client() as client:
        for what, body, headers in _forgeries(razorpay_order_id, order.amount_paise):
            response = client.post(
                WEBHOOK_URL,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Razorpay-Event-Id": f"evt_{uuid.uuid4().hex}",
                    **{k: v.encode("utf-8") if not v.isascii() else v for k, v in headers.items()},
                },
            )
            if response.status_code != 400:
                wrong.append((what, response.status_code, response.text[:200]))
    assert wrong == []
    time.sleep(1)  # a task queued by mistake would have run by now
    order.refresh_from_db()
    assert order.status == OrderStatus.PAYMENT_PENDING
    assert order.payment_status == PaymentStatus.PENDING
    after = (WebhookEvent.objects.count(), list(Payment.objects.values_list("status", flat=True)))
    assert after == before


SIGNED_BUT_UNSTORABLE = {
    "NaN": b'{"event": "payment.captured", "payload": {"amount": NaN}}',
    "Infinity": b'{"event": "payment.captured", "payload": {"amount": Infinity}}',
    "NUL in event": b'{"event": "payment.captured\\u0000", "payload": {}}',
    "NUL in payload": b'{"event": "payment.captured", "payload": {"note": "a\\u0000b"}}',
    "lone surrogate": b'{"event": "payment.captured", "payload": {"note": "\\ud800"}}',
}


@pytest.mark.parametrize("kind", sorted(SIGNED_BUT_UNSTORABLE))
def test_a_signed_webhook_the_database_cannot_store_is_a_400(stack, people, kind):
    body = SIGNED_BUT_UNSTORABLE[kind]
    before = WebhookEvent.objects.count()
    with stack.client() as client:
        response = client.post(
            WEBHOOK_URL,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Razorpay-Signature": webhook_signature(body),
                "X-Razorpay-Event-Id": f"evt_{uuid.uuid4().hex}",
            },
        )
    assert_error_shape(response, 400)
    assert WebhookEvent.objects.count() == before


def test_the_same_event_correctly_signed_does_change_the_order(stack, people, pending_payment):
    # The forgeries above fail for their forgery, not because the endpoint refuses everything.
    order, razorpay_order_id = pending_payment
    body = _captured_event(razorpay_order_id, order.amount_paise)
    with stack.client() as client:
        response = client.post(
            WEBHOOK_URL,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Razorpay-Signature": webhook_signature(body, WEBHOOK_SECRET),
                "X-Razorpay-Event-Id": SQL_LIKE[1],  # an id is data, kept verbatim
            },
        )
    assert response.status_code == 200, response.text
    assert WebhookEvent.objects.filter(event_id=SQL_LIKE[1]).exists()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the worker applies it
        order.refresh_from_db()
        if order.payment_status == PaymentStatus.PAID:
            break
        time.sleep(0.2)
    assert order.payment_status == PaymentStatus.PAID
    assert order.status == OrderStatus.SEARCHING_RIDER


def test_a_forged_checkout_signature_is_400_and_changes_nothing(stack, people, pending_payment):
    order, razorpay_order_id = pending_payment
    buyer, _ = people
    with stack.client(buyer.token) as client:
        for signature in ["0" * 64, "é" * 64, "\u202e" + "a" * 63, SQL_LIKE[0], ""]:
            response = client.post(
                "/api/v1/payments/razorpay/verify/",
                json={
                    "razorpay_order_id": razorpay_order_id,
                    "razorpay_payment_id": "pay_forged",
                    "razorpay_signature": signature,
                },
            )
            assert_error_shape(response, 400)
    order.refresh_from_db()
    assert order.payment_status == PaymentStatus.PENDING


# --- Bad tokens -------------------------------------------------------------------------------


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(user, other_user) -> dict[str, str]:
    good = AccessToken.for_user(user)
    expired = AccessToken.for_user(user)
    expired.set_exp(from_time=timezone.now() - timedelta(hours=2))
    claims = dict(good.payload)
    header, _, signature = str(good).split(".")
    tampered = {**claims, "user_id": str(other_user.pk)}  # someone else, the old signature
    unknown = AccessToken()
    unknown["user_id"] = str(uuid.uuid4())
    return {
        "garbage": "not-a-jwt",
        "three garbage parts": "abc.def.ghi",
        "empty": "",
        "expired": str(expired),
        "another key": jwt.encode(claims, "another-secret-key-" + "x" * 40, algorithm="HS256"),
        "HS512 with the right key": jwt.encode(claims, settings.SECRET_KEY, algorithm="HS512"),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "refresh as access": str(RefreshToken.for_user(user)),
        "tampered user id": f"{header}.{_b64(tampered)}.{signature}",
        "no signature": f"{header}.{_b64(claims)}.",
        "unknown user": str(unknown),
        "SQL": SQL_LIKE[0],
    }


def test_bad_tokens_are_401_on_http(stack, people):
    buyer, courier = people
    tokens = bad_tokens(courier.user, buyer.user)
    wrong = []
    for what, token in tokens.items():
        if not token:
            continue  # "Bearer " is not a legal header value; the bare "Bearer" is tried below
        for method, path, body in [
            ("GET", "/api/v1/auth/me/", None),
            ("GET", "/api/v1/orders/", None),
            ("POST", "/api/v1/riders/me/location/", location_body()),
        ]:
            with stack.client() as client:
                response = client.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {token}"}
                )
            if response.status_code != 401 or "error" not in response.json():
                wrong.append((what, path, response.status_code, response.text[:120]))
    for header in ["Bearer", "Bearer a b", f"Token {courier.token}", f"bearer{courier.token}"]:
        with stack.client() as client:
            response = client.get("/api/v1/auth/me/", headers={"Authorization": header})
        if response.status_code != 401:
            wrong.append((header[:20], response.status_code))
    assert wrong == []
    courier.rider.refresh_from_db()
    assert courier.rider.last_location is None  # no forged ping moved the rider


def test_a_disabled_users_valid_token_is_401(stack, people):
    buyer, courier = people
    for person in (buyer, courier):
        person.user.is_active = False
        person.user.save(update_fields=["is_active"])
    with stack.client(buyer.token) as client:
        assert_error_shape(client.get("/api/v1/auth/me/"), 401)
    with stack.client(courier.token) as client:
        assert_error_shape(client.post("/api/v1/riders/me/location/", json=location_body()), 401)
    with ws_connect(stack, "/ws/rider/", courier.token) as socket:
        assert close_code(socket) == 4401


@pytest.mark.checklist("P9.12")
def test_bad_tokens_close_both_sockets_with_4401(stack, people):
    buyer, courier = people
    order = order_for(buyer, "searching_rider")
    wrong = []
    for what, token in bad_tokens(courier.user, buyer.user).items():
        for path in ["/ws/rider/", f"/ws/delivery/{order.pk}/"]:
            with ws_connect(stack, path, token) as socket:
                code = close_code(socket)
            if code != 4401:
                wrong.append((what, path, code))
    for path in ["/ws/rider/", f"/ws/delivery/{order.pk}/"]:
        with ws_connect(stack, path, None) as socket:
            if (code := close_code(socket)) != 4401:
                wrong.append(("no token", path, code))
    assert wrong == []


# --- Afterwards -------------------------------------------------------------------------------


def test_nothing_hostile_made_a_500_or_an_error_record(stack, log_window):
    assert stack.healthy()
    assert log_window.server_error_answers() == []
    errors = [
        (record.get("logger"), str(record["message"])[:300]) for record in log_window.errors()
    ]
    assert errors == []  # no record is expected: every refusal above is a handled 4xx
    # The whole session's, as the stack reports them (other proof modules share this stack).
    assert stack.server_errors() == []
