"""Schemathesis against the live stack: every operation of /api/schema/, as a customer and a rider.

Each operation of the schema the running server serves is fuzzed twice, once with a customer's
access token and once with a rider's, with schema-valid (positive) and schema-invalid (negative)
requests. Every answer must be no 5xx, carry a documented status code and content type, and
match the documented body schema. Random ids would only ever reach "404 not found", so path ids
are sometimes swapped for real ones the caller may act on (an order being searched for, one
waiting for payment, one its rider is carrying, an offer), which lets the fuzzing reach the
services: cancelling, paying, delivery steps, accepting.

Nothing is left out. Two operations need a word:
- POST /auth/logout/ revokes the refresh token in its body, never the caller's access token, and
  no generated string is a refresh token, so fuzzing it cannot sign the fuzzing out. The happy
  path below logs a real refresh token out (204) and checks the access token still works.
- POST /payments/razorpay/webhook/ is authenticated by X-Razorpay-Signature over the raw body;
  generated signatures never match, so every fuzzed call must be a documented 400. The happy path
  below sends a correctly signed event (200). test_hostile_input.py forges signatures on purpose.

Random requests seldom succeed, so `test_success_answers_*` also walk the main flows with valid
requests and validate each answer, 2xx bodies included, against the same live schema.

Runs in about a minute: 25 examples per operation and role, derandomized (the same requests each
run), no shrinking (a failure reports the first falsifying request), no example database.
"""

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
import schemathesis
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from delivery.models import Offer
from devstack.stack import LogWindow
from orders.tests.factories import DROP, PICKUP
from payments.tests.fake_razorpay import webhook_body, webhook_signature
from proof.conftest import assert_on_test_database, customer, order_for, rider
from riders.tests.factories import located

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
HTTP_METHODS = {"get", "put", "patch", "post", "delete", "head", "options", "trace"}
EXAMPLES_PER_OPERATION = 25

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def _code_schema() -> dict:
    """The schema the code generates (drf-spectacular, in this process)."""
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(document: dict) -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    )


# The parametrization: collected before the server runs, then checked against the live schema.
OPERATIONS = _operations(_code_schema())


# --- Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log_window(stack) -> LogWindow:
    return stack.log_window()


@pytest.fixture(scope="module")
def live_schema(stack, log_window):
    return schemathesis.openapi.from_url(f"{stack.base_url}/api/schema/")


@dataclass
class Caller:
    person: object
    known_ids: dict[str, list[str]]


@pytest.fixture
def callers(stack, log_window, db_access) -> dict[str, Caller]:
    """Seeded for each test: proof/conftest.py empties the tables after every test."""
    assert_on_test_database(stack)
    buyer = customer()
    carrier = rider()
    searching = order_for(buyer, "searching_rider")
    unpaid = order_for(buyer, "payment_pending", payment_method="razorpay")
    carried = order_for(buyer, "at_pickup", carrier=carrier)
    offered = order_for(customer(), "searching_rider")
    offer = Offer.objects.create(
        order=offered,
        rider=carrier.rider,
        round_number=1,
        distance_m=800,
        pay_paise=5000,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    return {
        "customer": Caller(buyer, {"order_id": [str(searching.pk), str(unpaid.pk)]}),
        "rider": Caller(carrier, {"order_id": [str(carried.pk)], "offer_id": [str(offer.pk)]}),
    }


# --- The live schema --------------------------------------------------------------------------


def test_the_live_schema_has_every_operation_of_the_code(live_schema):
    live = _operations(live_schema.raw_schema)
    assert live == OPERATIONS
    assert len(live) >= 30  # the API of API.md, and not an empty or truncated document


# --- Fuzzing ----------------------------------------------------------------------------------


def _requires_auth(live_schema, method: str, path: str) -> bool:
    document = live_schema.raw_schema
    security = document["paths"][path][method.lower()].get("security", document.get("security"))
    return bool(security) and {} not in security


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("role", ["customer", "rider"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_fuzz(stack, live_schema, callers, role, method, path):
    operation = live_schema[path][method]
    caller = callers[role]
    token = caller.person.headers["Authorization"]
    statuses = []  # of the requests that carried the caller's token
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    real_ids = st.fixed_dictionaries(
        {
            name: st.sampled_from([None, *ids])
            for name, ids in caller.known_ids.items()
            if f"{{{name}}}" in path
        }
    )

    @FUZZ_SETTINGS
    @given(case=cases, ids=real_ids)
    def run(case, ids):
        for name, value in ids.items():
            if value is not None:
                case.path_parameters[name] = value
        response = case.call_and_validate(
            base_url=stack.base_url, headers=caller.person.headers, checks=CHECKS, timeout=15
        )
        # Negative cases may drop the credentials on purpose (a missing-auth violation).
        if response.request.headers.get("Authorization") == token:
            statuses.append(response.status_code)

    run()

    assert statuses, "no request carried the caller's token"
    if _requires_auth(live_schema, method, path):
        # A valid access token was sent: a 401 would mean it was not honoured.
        assert 401 not in statuses, statuses


# --- Success answers --------------------------------------------------------------------------


def call(live_schema, stack, person, method, path, *, expect, **case_fields):
    """One request built by schemathesis from explicit data, validated like the fuzzed ones."""
    case = live_schema[path][method].Case(**case_fields)
    headers = person.headers if person is not None else None
    response = case.call_and_validate(
        base_url=stack.base_url, headers=headers, checks=CHECKS, timeout=15
    )
    assert response.status_code == expect, (method, path, response.status_code, response.text)
    return response.json() if response.content else None


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.checklist("P9.2", "P9.3", "P9.4", "P9.5", "P11.11", "P12.18")
def test_success_answers_of_a_customer_match_the_schema(stack, live_schema, db_access):
    assert_on_test_database(stack)
    buyer = customer()
    unpaid = order_for(buyer, "payment_pending", payment_method="razorpay")
    refresh = str(RefreshToken.for_user(buyer.user))
    request = lambda method, path, expect, **fields: call(  # noqa: E731
        live_schema, stack, buyer, method, path, expect=expect, **fields
    )

    request("GET", "/health/", 200)
    request("GET", "/api/config/", 200)
    request("GET", "/api/v1/auth/me/", 200)
    request("PATCH", "/api/v1/auth/me/", 200, body={"name": "Asha 🚲"})
    request("POST", "/api/v1/auth/otp/request/", 202, body={"phone": "+919812399001"})
    place = {key: PICKUP[key] for key in ("lat", "lng", "address")}
    quote = request(
        "POST",
        "/api/v1/orders/quote/",
        201,
        body={
            "pickup": place,
            "drop": {key: DROP[key] for key in ("lat", "lng", "address")},
            "package": {"description": "Keys", "weight_grams": 300},
        },
    )
    order = request(
        "POST",
        "/api/v1/orders/",
        201,
        body={"quote_id": quote["id"], "payment_method": "cod", "notes": "Ring twice"},
        headers={"Idempotency-Key": "fuzz-success-1"},
    )
    again = request(
        "POST",
        "/api/v1/orders/",
        200,
        body={"quote_id": quote["id"], "payment_method": "cod", "notes": "Ring twice"},
        headers={"Idempotency-Key": "fuzz-success-1"},
    )
    assert again["id"] == order["id"]
    ids = {"order_id": order["id"]}
    request("GET", "/api/v1/orders/", 200, query={"page": 1})
    request("GET", "/api/v1/orders/{order_id}/", 200, path_parameters=ids)
    request("GET", "/api/v1/delivery/{order_id}/", 200, path_parameters=ids)
    request(
        "POST",
        "/api/v1/orders/{order_id}/cancel/",
        200,
        path_parameters=ids,
        body={"reason": "Changed my mind"},
    )
    paying = request(
        "POST", "/api/v1/payments/razorpay/order/", 200, body={"order_id": str(unpaid.pk)}
    )
    assert paying["amount_paise"] == unpaid.amount_paise
    event = webhook_body("payment.authorized", payment={"id": "pay_fuzz", "status": "authorized"})
    webhook = live_schema["/api/v1/payments/razorpay/webhook/"]["POST"].Case(
        body=json.loads(event), headers={"X-Razorpay-Event-Id": "evt_fuzz_success"}
    )
    with stack.client() as client:
        # Sent by hand: the signature covers the exact bytes, whatever schemathesis would send.
        answer = client.post(
            "/api/v1/payments/razorpay/webhook/",
            content=event,
            headers={
                "Content-Type": "application/json",
                "X-Razorpay-Signature": webhook_signature(event),
                "X-Razorpay-Event-Id": "evt_fuzz_success",
            },
        )
    assert answer.status_code == 200, answer.text
    webhook.validate_response(answer, checks=CHECKS)
    rotated = call(
        live_schema,
        stack,
        None,
        "POST",
        "/api/v1/auth/token/refresh/",
        expect=200,
        body={"refresh": refresh},
    )
    request("POST", "/api/v1/auth/logout/", 204, body={"refresh": rotated["refresh"]})
    request("GET", "/api/v1/auth/me/", 200)  # logging out revoked the refresh token only


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.checklist("P9.6", "P11.11")
def test_success_answers_of_a_rider_match_the_schema(stack, live_schema, db_access):
    assert_on_test_database(stack)
    courier = rider()
    offered = order_for(customer(), "searching_rider")
    request = lambda method, path, expect, **fields: call(  # noqa: E731
        live_schema, stack, courier, method, path, expect=expect, **fields
    )

    request("GET", "/api/v1/riders/me/", 200)
    request("PATCH", "/api/v1/riders/me/", 200, body={"name": "Ravi"})
    request("POST", "/api/v1/riders/me/offline/", 200)  # withdraws pending offers
    request("POST", "/api/v1/riders/me/online/", 200)
    request(
        "POST",
        "/api/v1/riders/me/location/",
        202,
        body={
            "lat": PICKUP["lat"],
            "lng": PICKUP["lng"],
            "recorded_at": timezone.now().isoformat(),
        },
    )
    offer = Offer.objects.create(
        order=offered,
        rider=courier.rider,
        round_number=1,
        distance_m=800,
        pay_paise=5000,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    request("GET", "/api/v1/riders/me/offers/", 200)
    ids = {"offer_id": str(offer.pk)}
    request("POST", "/api/v1/riders/offers/{offer_id}/accept/", 200, path_parameters=ids)
    order = {"order_id": str(offered.pk)}
    request("GET", "/api/v1/delivery/{order_id}/", 200, path_parameters=order)
    request("POST", "/api/v1/delivery/{order_id}/arrived-pickup/", 200, path_parameters=order)
    request("POST", "/api/v1/delivery/{order_id}/picked-up/", 200, path_parameters=order)
    courier.rider.refresh_from_db()
    located(courier.rider, lat=DROP["lat"], lng=DROP["lng"])
    request("POST", "/api/v1/delivery/{order_id}/arrived-drop/", 200, path_parameters=order)
    request(
        "POST",
        "/api/v1/delivery/{order_id}/deliver/",
        200,
        path_parameters=order,
        body={"delivery_code": offered.delivery_code},
    )
    today = timezone.localdate().isoformat()
    earnings = request(
        "GET", "/api/v1/riders/me/earnings/", 200, query={"from": today, "to": today}
    )
    assert earnings["count"] == 1


# --- Afterwards -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_fuzzing_left_the_server_healthy_and_logged_no_error(stack, log_window):
    assert stack.healthy()
    assert log_window.server_error_answers() == []
    errors = [
        (record.get("logger"), str(record["message"])[:300]) for record in log_window.errors()
    ]
    assert errors == []
