"""The sockets' AsyncAPI document: valid AsyncAPI 3.0.0, in step with the code's enums and close
codes, served as YAML, JSON and a page, and shipped in the image. That every frame the
consumers send in the suite fits it is checked by the root conftest.py."""

import copy
import fnmatch
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from django.test import Client
from django.utils import timezone

from core.realtime import ops_alerts_changed_message, ops_riders_moved_message, status_message
from core.tests.asyncapi import allowed_messages, validate_frame
from delivery import consumers
from delivery.models import Offer
from orders.models import OrderStatus, PaymentStatus
from riders.models import Rider

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "api" / "asyncapi.yaml"
# @asyncapi/specs 6.11.1, schemas/3.0.0-without-$id.json as published (the bundled schema,
# every definition and binding in one file with local $refs), byte for byte.
OFFICIAL_SCHEMA = ROOT / "deploy" / "schemas" / "asyncapi-3.0.0.schema.json"
ORDER_ID = "6f1c0e8a-3b9e-4d0a-9a57-2a3c9e1f0b11"
AT = "2026-01-31T15:45:00.123456+05:30"


def document() -> dict:
    return yaml.safe_load(DOCUMENT.read_text())


def official_errors(doc: dict) -> list[str]:
    schema = json.loads(OFFICIAL_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(doc)]


def test_the_document_is_valid_asyncapi_3():
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert official_errors(doc) == []


def test_the_official_schema_refuses_a_broken_document():
    # given an operation whose action is neither send nor receive, and a channel with no messages
    broken = copy.deepcopy(document())
    broken["operations"]["sendOffer"]["action"] = "publish"  # AsyncAPI 2's word
    broken["channels"]["ops"]["messages"] = ["ready"]
    # then
    errors = official_errors(broken)
    assert any("operations.sendOffer" in error for error in errors), errors
    assert any("channels.ops" in error for error in errors), errors


def test_every_example_is_a_frame_its_side_may_send():
    doc = document()
    checked = 0
    for channel in ("delivery", "rider", "ops"):
        for side in ("server", "client"):
            for name in allowed_messages(channel, side):
                message = doc["components"]["messages"][name]
                assert message.get("examples"), f"{name} has no example"
                for example in message["examples"]:
                    validate_frame(channel, example["payload"], sent_by=side)
                    checked += 1
    assert checked >= len(doc["components"]["messages"])


def payload_enum(message: str, *path: str) -> list:
    schema = allowed_messages_payloads()[message]
    for key in path:
        schema = schema["properties"][key] if key != "items" else schema["items"]
    return schema.get("enum") or schema["oneOf"][0]["enum"]


def allowed_messages_payloads() -> dict:
    payloads = {}
    for channel in ("delivery", "rider", "ops"):
        for side in ("server", "client"):
            for name, validator in allowed_messages(channel, side).items():
                payloads[name] = validator.schema
    return payloads


def test_the_enums_are_the_codes():
    assert payload_enum("trackingStatus", "status") == list(OrderStatus.values)
    assert payload_enum("orderStatus", "status") == list(OrderStatus.values)
    assert payload_enum("orderStatus", "payment_status") == list(PaymentStatus.values)
    assert payload_enum("riderStatus", "status") == list(Rider.Status.values)
    assert payload_enum("offerWithdrawn", "reason") == list(Offer.Reason.values)


def test_the_close_codes_are_the_consumers():
    documented = {entry["code"] for entry in document()["x-close-codes"]}
    in_code = {
        value
        for name, value in vars(consumers).items()
        if name.startswith("CLOSE_") and isinstance(value, int)
    }
    assert in_code == {1000, 4401, 4403, 4409, 4429}
    # and those uvicorn sends: 1012 a worker leaving, 1009 a frame past ws_max_size, 1011 pings
    # unanswered
    assert documented == in_code | {1009, 1011, 1012}


def test_a_frame_the_code_builds_validates():
    validate_frame(
        "delivery",
        status_message(
            order_id=ORDER_ID, seq=3, status="picked_up", rider_id=None, at=timezone.now()
        ),
    )
    validate_frame(
        "ops",
        {
            **ops_alerts_changed_message(alert="refund_failed", order_id=ORDER_ID),
            "type": "alerts_changed",
        },
    )
    moved = ops_riders_moved_message([{"rider_id": ORDER_ID, "lat": 12.9, "lng": 77.6, "at": AT}])
    validate_frame("ops", {**moved, "type": "riders_moved"})
    fix = {"type": "location", "lat": 12.9, "lng": 77.6, "recorded_at": AT, "heading": None}
    validate_frame("rider", fix, sent_by="client")


def test_a_frame_off_the_document_fails_with_what_was_tried_and_why():
    frame = {
        "type": "status",
        "order_id": ORDER_ID,
        "sequence": 3,
        "status": "picked_up",
        "rider_id": None,
        "at": AT,
    }
    with pytest.raises(AssertionError) as failure:
        validate_frame("delivery", frame)
    message = str(failure.value)
    assert "tried trackingStatus, trackingLocation, readOnlyError" in message
    assert "of type 'status'" in message
    assert re.search(r"trackingStatus: at \$: .*'seq' is a required property", message), message


@pytest.mark.parametrize(
    "channel, frame, sent_by",
    [
        (
            "delivery",
            {
                "type": "status",
                "order_id": ORDER_ID,
                "seq": 1,
                "status": "lost",
                "rider_id": None,
                "at": AT,
            },
            "server",
        ),
        (
            "delivery",
            {
                "type": "location",
                "order_id": ORDER_ID,
                "seq": 1,
                "lat": 1,
                "lng": 2,
                "at": "2026-01-31T15:45:00",
            },
            "server",
        ),  # no UTC offset
        (
            "rider",
            {
                "type": "offer_withdrawn",
                "offer_id": ORDER_ID,
                "order_id": ORDER_ID,
                "reason": "taken",
                "extra": 1,
            },
            "server",
        ),
        ("rider", {"type": "ready"}, "server"),  # the ops feed's, not the rider's
        ("ops", {"type": "error", "code": "invalid_json", "message": "x"}, "server"),
        ("rider", {"type": "location", "lat": 91, "lng": 0, "recorded_at": AT}, "client"),
        ("rider", {"type": "location_ack", "recorded_at": AT, "latest": True}, "client"),
        ("delivery", {"type": "location", "lat": 1, "lng": 2, "recorded_at": AT}, "client"),
    ],
)
def test_frames_off_the_document_fail(channel, frame, sent_by):
    with pytest.raises(AssertionError):
        validate_frame(channel, frame, sent_by=sent_by)


# --- Served ----------------------------------------------------------------------------------


@pytest.fixture
def client() -> Client:
    return Client()


def test_the_document_is_served_as_yaml(client):
    response = client.get("/api/schema/sockets/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/yaml"
    assert response.content == DOCUMENT.read_bytes()


@pytest.mark.parametrize(
    "query, accept", [("?format=json", ""), ("", "application/json"), ("", "*/*, application/json")]
)
def test_the_document_is_served_as_json_when_asked(client, query, accept):
    response = client.get("/api/schema/sockets/" + query, HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == document()


def test_the_page_shows_every_socket_message_and_close_code(client):
    response = client.get("/api/docs/sockets/")
    assert response.status_code == 200
    page = response.content.decode()
    doc = document()
    for channel in doc["channels"].values():
        assert f"<code>{channel['address']}</code>" in page
    for key, message in doc["components"]["messages"].items():
        assert f'<code>"type": "{message["name"]}"</code>' in page, key
    for entry in doc["x-close-codes"]:
        assert f"<strong>{entry['code']}</strong> {entry['name']}" in page
    # every field of a message, under it: the offer's
    offer = page[page.index('id="rider-offer"') : page.index('id="rider-offerWithdrawn"')]
    for field in doc["components"]["messages"]["offer"]["payload"]["properties"]:
        assert f"<code>{field}</code>" in offer, field
    # no script, nothing fetched from elsewhere
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_the_page_escapes_the_documents_text():
    from core.asyncapi import inline, prose

    assert str(inline("`<b>` & **bold**")) == "<code>&lt;b&gt;</code> &amp; <strong>bold</strong>"
    assert str(prose("one\n\ntwo")) == "<p>one</p>\n<p>two</p>"


def test_the_document_ships_in_the_image():
    # The Dockerfile copies the build context; .dockerignore keeps the document in it.
    assert re.search(r"^COPY \. /app$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    path = DOCUMENT.relative_to(ROOT)
    prefixes = [str(parent) for parent in reversed(path.parents) if str(parent) != "."]
    for candidate in [*prefixes, str(path)]:
        excluded = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(candidate, p)]
        assert not excluded, f"{candidate} is left out of the image by {excluded}"
