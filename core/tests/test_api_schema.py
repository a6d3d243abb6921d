"""The OpenAPI schema the apps generate their clients from changes only on purpose: it is kept
in docs/api/openapi.yaml, and a change of the code that changes it fails here until that file
is written again (UPDATE_API_SCHEMA=1 with this test) and the diff read in review. A change
that breaks the apps built on the committed schema (schema_changes.py) is refused, even then,
unless the schema's major version (SPECTACULAR_SETTINGS["VERSION"]) goes up with it.

Every operation is summarised and described, and its examples hold to the schema.
"""

import copy
import os
from pathlib import Path

import jsonschema
import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator

from core.exceptions import ApiError, CommonError, ErrorCode
from core.openapi_examples import EXAMPLES
from core.tests.schema_changes import breaking_changes

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "api" / "openapi.yaml"
# The operations of one order's way, sign-in to rating: an app developer reads an example of
# each before writing a line (core/openapi_examples.py).
MAIN_FLOW = {
    "auth_otp_request",
    "auth_otp_verify",
    "orders_quote",
    "orders_create",
    "orders_get",
    "riders_go_online",
    "riders_location",
    "riders_offers_list",
    "riders_offers_accept",
    "delivery_get",
    "delivery_picked_up",
    "delivery_deliver",
    "riders_earnings",
    "orders_rate",
}


def major(schema: dict) -> int:
    return int(schema["info"]["version"].split(".")[0])


def test_the_schema_is_the_one_in_docs(tmp_path):
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")
    committed, live = yaml.safe_load(SCHEMA.read_text()), yaml.safe_load(generated.read_text())
    breaking = breaking_changes(committed, live)
    assert not breaking or major(live) > major(committed), (
        "these changes break apps built on docs/api/openapi.yaml; make them additive, or raise "
        "the major version (SPECTACULAR_SETTINGS['VERSION']) on purpose:\n  "
        + "\n  ".join(breaking)
    )
    if os.environ.get("UPDATE_API_SCHEMA") == "1":
        SCHEMA.write_text(generated.read_text())
    assert generated.read_text() == SCHEMA.read_text(), (
        "the API schema changed: if on purpose, run this test with UPDATE_API_SCHEMA=1 and "
        "commit docs/api/openapi.yaml"
    )


# --- What counts as breaking ------------------------------------------------------------------


def committed() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def component(schema: dict, name: str) -> dict:
    return schema["components"]["schemas"][name]


def remove_operation(s):
    del s["paths"]["/api/v1/orders/{order_id}/rating/"]["post"]


def rename_operation(s):
    s["paths"]["/api/v1/orders/quote/"]["post"]["operationId"] = "orders_price"


def remove_response_field(s):
    del component(s, "OrderOutput")["properties"]["delivery_code"]


def response_field_optional(s):
    component(s, "OrderOutput")["required"].remove("amount_paise")


def response_field_nullable(s):
    component(s, "QuoteCreateOutput")["properties"]["total_paise"]["nullable"] = True


def response_enum_grows(s):
    component(s, "OrderStatus")["enum"].append("returned")


def response_type_changes(s):
    component(s, "QuoteCreateOutput")["properties"]["total_paise"]["type"] = "string"


def new_required_request_field(s):
    create = component(s, "OrderListCreateInput")
    create["properties"]["coupon"] = {"type": "string"}
    create["required"].append("coupon")


def request_field_now_required(s):
    component(s, "OrderListCreateInput")["required"].append("notes")


def request_enum_narrows(s):
    component(s, "PaymentMethod")["enum"].remove("razorpay")


def request_limit_tightens(s):
    component(s, "OrderRatingInput")["properties"]["comment"]["maxLength"] = 10


def new_required_parameter(s):
    s["paths"]["/api/v1/orders/"]["get"]["parameters"].append(
        {"in": "query", "name": "status", "required": True, "schema": {"type": "string"}}
    )


def success_status_removed(s):
    del s["paths"]["/api/v1/orders/quote/"]["post"]["responses"]["201"]


BREAKING = [
    remove_operation,
    rename_operation,
    remove_response_field,
    response_field_optional,
    response_field_nullable,
    response_enum_grows,
    response_type_changes,
    new_required_request_field,
    request_field_now_required,
    request_enum_narrows,
    request_limit_tightens,
    new_required_parameter,
    success_status_removed,
]


def new_optional_request_field(s):
    component(s, "OrderListCreateInput")["properties"]["coupon"] = {"type": "string"}


def new_response_field(s):
    order = component(s, "OrderOutput")
    order["properties"]["eta_seconds"] = {"type": "integer"}
    order["required"].append("eta_seconds")


def new_operation(s):
    s["paths"]["/api/v1/orders/{order_id}/receipt/"] = {
        "get": {"operationId": "orders_receipt", "responses": {"200": {"description": ""}}}
    }


def new_error_status(s):
    s["paths"]["/api/v1/orders/quote/"]["post"]["responses"]["418"] = {"description": "no"}


def request_enum_widens(s):
    # (PaymentMethod is an answer too, where a new value would break the apps)
    component(s, "OrderListCreateInput")["properties"]["payment_method"] = {
        "type": "string",
        "enum": ["cod", "razorpay", "upi"],
    }


def component_renamed(s):
    schemas = s["components"]["schemas"]
    schemas["OrderState"] = schemas.pop("OrderStatus")
    text = yaml.safe_dump(s).replace("/OrderStatus'", "/OrderState'")
    s.clear()
    s.update(yaml.safe_load(text))


NOT_BREAKING = [
    new_optional_request_field,
    new_response_field,
    new_operation,
    new_error_status,
    request_enum_widens,
    component_renamed,
]


@pytest.mark.parametrize("change", BREAKING, ids=lambda change: change.__name__)
def test_a_change_that_breaks_the_apps_is_found(change):
    old = committed()
    new = copy.deepcopy(old)
    change(new)
    assert breaking_changes(old, new), f"{change.__name__} was not found breaking"


@pytest.mark.parametrize("change", NOT_BREAKING, ids=lambda change: change.__name__)
def test_an_additive_change_is_not_called_breaking(change):
    old = committed()
    new = copy.deepcopy(old)
    change(new)
    assert breaking_changes(old, new) == []


# --- Documentation of each operation ---------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_every_operation_is_summarised_and_described(schema):
    undocumented = [
        where
        for where, operation in operations(schema)
        if not operation.get("summary") or not operation.get("description")
    ]
    assert undocumented == []


def test_every_operation_documents_its_errors_in_the_error_shape(schema):
    for where, operation in operations(schema):
        for status, response in operation["responses"].items():
            if int(status) >= 400 and where != "GET /health/":
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ApiError"}, (where, status)
        assert {"500", "503"} <= operation["responses"].keys(), where
        if "requestBody" in operation:
            assert "413" in operation["responses"], where
        if "415" in operation["responses"]:  # only a body can be of the wrong type
            assert "requestBody" in operation, where


def test_the_main_flow_has_examples(schema):
    named = {operation["operationId"] for _, operation in operations(schema)}
    assert set(EXAMPLES) <= named, set(EXAMPLES) - named
    assert not MAIN_FLOW - set(EXAMPLES)


def json_schema(schema: dict, target: dict) -> dict:
    """An OpenAPI 3.0 schema as JSON Schema: `nullable` as a null type, refs into components."""

    def convert(node):
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: convert(value) for key, value in node.items()}
        if node.pop("nullable", False):
            node = {"anyOf": [node, {"type": "null"}]}
        return node

    return {**convert(target), "components": convert(schema["components"])}


def examples_of(operation: dict):
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    for name, example in body.get("examples", {}).items():
        yield "request", name, example["value"], body["schema"]
    for status, response in operation["responses"].items():
        content = response.get("content", {}).get("application/json", {})
        for name, example in content.get("examples", {}).items():
            yield status, name, example["value"], content["schema"]


def error_codes() -> dict[str, ErrorCode]:
    codes = {kind.code: kind for kind in CommonError}
    for app in ("accounts", "orders", "riders", "payments", "delivery"):
        module = __import__(f"{app}.errors", fromlist=["errors"])
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, ErrorCode) and value is not ErrorCode:
                codes.update({kind.code: kind for kind in value})
    return codes


def test_every_example_holds_to_its_schema(schema):
    codes = error_codes()
    checked = 0
    for where, operation in operations(schema):
        for status, name, value, body in examples_of(operation):
            jsonschema.validate(
                value,
                json_schema(schema, body),
                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
            )
            checked += 1
            if status != "request" and int(status) >= 400:
                # a refusal as the API words it: the code's status and message
                kind = codes[value["error"]["code"]]
                refusal = ApiError(kind)
                assert (int(status), value["error"]["message"]) == (
                    refusal.status_code,
                    refusal.message,
                ), (where, name)
    assert checked >= 2 * len(MAIN_FLOW)


def test_public_operations_ask_for_no_token(schema):
    # An optional requirement ([{}]) makes generated clients demand an authenticated client.
    names = {"service_health", "service_config", "auth_otp_request", "auth_otp_verify"}
    public = {
        operation["operationId"]: operation.get("security")
        for _, operation in operations(schema)
        if operation["operationId"] in names
    }
    assert public == dict.fromkeys(names), public
