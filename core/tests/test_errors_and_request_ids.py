"""Errors keep one JSON shape; request ids reach responses and logs; logs never leak tokens."""

import json
import re
import uuid

import pytest
import websockets.sync.client
from django.db import connections
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.test import APIClient

import devstack.env
from config.urls import handler400, handler403, handler404, handler500  # noqa: F401
from core.views import PublicApi
from devstack.env import base_env, local_production_env
from devstack.ports import free_port
from devstack.redis import RedisServer
from devstack.web import Server, start_server

# --- A throwaway URLconf (this module) with views that fail on purpose ---------------------------

LEAKY_DETAIL = "kaboom-4f1e secret=hunter2 at /srv/app/payments/razorpay.py"


def _raise_unexpected():
    raise RuntimeError(LEAKY_DETAIL)


def _connect_to_unreachable_database():
    """A real failed connection: the project's database settings aimed at a dead port."""
    default = connections["default"]
    settings_dict = {
        **default.settings_dict,
        "PORT": free_port(),
        "OPTIONS": {"connect_timeout": 2},  # no pool: fail at once, not after the pool timeout
    }
    unreachable = default.__class__(settings_dict, alias="unreachable")
    try:
        unreachable.ensure_connection()  # raises django.db.OperationalError
    finally:
        unreachable.close()


def plain_crash_view(request):
    _raise_unexpected()
    return HttpResponse()


def plain_database_view(request):
    _connect_to_unreachable_database()
    return HttpResponse()


class CrashApi(PublicApi):
    def get(self, request):
        _raise_unexpected()


class DatabaseApi(PublicApi):
    def get(self, request):
        _connect_to_unreachable_database()


class SignupApi(PublicApi):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField()
        age = serializers.IntegerField(min_value=18)

    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(serializer.validated_data, status=201)


urlpatterns = [
    path("crash/plain/", plain_crash_view),
    path("api/crash/", plain_crash_view),
    path("crash/api/", CrashApi.as_view()),
    path("database/plain/", plain_database_view),
    path("database/api/", DatabaseApi.as_view()),
    path("signup/", SignupApi.as_view()),
]

throwaway_urls = override_settings(ROOT_URLCONF=__name__)


@pytest.fixture
def client() -> APIClient:
    """Renders unexpected exceptions as a real server would, instead of re-raising them."""
    client = APIClient()
    client.raise_request_exception = False
    return client


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# --- Error shape (in process) ----------------------------------------------------------------


@override_settings(DEBUG=False)
def test_unknown_url_is_a_json_404(client):
    # when
    response = client.get("/no/such/page/")

    # then
    error = assert_error(response, 404, "not_found")
    assert "fields" not in error


@throwaway_urls
@override_settings(DEBUG=False)
@pytest.mark.parametrize("url", ["/crash/plain/", "/crash/api/"])
@pytest.mark.checklist("P10.18")
def test_unhandled_exception_is_a_json_500_that_reveals_nothing(client, url):
    # when
    response = client.get(url)

    # then
    assert_error(response, 500, "server_error")
    text = response.content.decode()
    for leak in ("kaboom", "hunter2", "RuntimeError", "Traceback", "/srv/", ".py", "File "):
        assert leak not in text


@override_settings(DEBUG=True)
@pytest.mark.parametrize("url", ["/api/v1/no-such-thing/", "/api/v2/orders/", "/api/"])
def test_with_debug_on_an_unknown_api_path_is_still_a_json_404(client, url):
    response = client.get(url)

    assert_error(response, 404, "not_found")


@override_settings(DEBUG=True)
def test_with_debug_on_a_page_outside_the_api_keeps_djangos_debug_404(client):
    response = client.get("/no/such/page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@throwaway_urls
@override_settings(DEBUG=True)
def test_with_debug_on_a_crash_under_the_api_is_a_json_500(client):
    response = client.get("/api/crash/")

    assert_error(response, 500, "server_error")
    assert "kaboom" not in response.content.decode()


@throwaway_urls
def test_validation_error_is_a_400_naming_each_field(client):
    # when
    response = client.post("/signup/", {"age": 12}, format="json")

    # then
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"name", "age"}
    assert all(isinstance(message, str) for message in error["fields"]["age"])


@pytest.mark.django_db
@throwaway_urls
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("url", ["/database/plain/", "/database/api/"])
@pytest.mark.checklist("P10.18")
def test_database_outage_in_a_view_is_a_503_with_retry_after(client, url, debug):
    # when a view's database connection is refused
    with override_settings(DEBUG=debug):
        response = client.get(url)

    # then
    assert_error(response, 503, "service_unavailable")
    assert int(response["Retry-After"]) > 0
    assert "refused" not in response.content.decode().lower()


# --- Request ids (in process) -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_uuid_request_id_from_the_client_is_echoed(client):
    sent = str(uuid.uuid4())

    response = client.get("/api/config/", headers={"X-Request-ID": sent})

    assert response.status_code == 200
    assert response["X-Request-ID"] == sent


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sent",
    [
        "0123456789abcdef0123456789abcdef",  # nginx's $request_id
        "Root=1-67891233-abcdef012345678912345678",  # an ALB trace id
        "app-ios:7.2.1:req_42",  # a client's own
        "x" * 200,
    ],
)
def test_a_request_id_of_safe_characters_from_the_client_is_kept_and_echoed(client, sent):
    response = client.get("/api/config/", headers={"X-Request-ID": sent})

    assert response.status_code == 200
    assert response["X-Request-ID"] == sent


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header", [None, "", "<script>", "' OR 1=1 --", "a b", "id;Parent=2", "x" * 201, "id\u00e9"]
)
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_one(client, header):
    headers = {"X-Request-ID": header} if header is not None else {}

    first = client.get("/api/config/", headers=headers)["X-Request-ID"]
    second = client.get("/api/config/", headers=headers)["X-Request-ID"]

    assert uuid.UUID(first).version == 4
    assert first != header
    assert first != second


# --- Through a real server: request ids and tokens in the logs, JSON or readable --------------

CONSOLE_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\[[^\]]*\] \S+: "
)
SECRET = "SECRET123tok"


@pytest.fixture(scope="module")
def server_env(django_db_setup, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("logs")
    redis = RedisServer(work_dir / "redis")
    redis.start()
    database_url = devstack.env.database_url(connections["default"].settings_dict)
    yield work_dir, {"DATABASE_URL": database_url, "REDIS_URL": redis.url}
    redis.kill()


@pytest.fixture(scope="module")
def production_server(server_env):
    work_dir, urls = server_env
    # Production serves collected static files; an empty STATIC_ROOT stands in for them.
    static_root = work_dir / "static"
    static_root.mkdir()
    env = local_production_env(STATIC_ROOT=str(static_root), **urls)
    server = start_server(env, work_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def development_server(server_env):
    work_dir, urls = server_env
    server = start_server(base_env(DJANGO_ENV="development", **urls), work_dir)
    yield server
    server.stop()


def send_tokens_in_query_strings(server: Server) -> str:
    """Requests carrying secrets in their query strings; returns a path to wait for in logs."""
    marker = f"/no-such-page-{uuid.uuid4().hex}/"
    server.get(f"/health/?token={SECRET}")
    server.get(f"/api/config/?page=1&token={SECRET}&access={SECRET}")
    server.get(f"/api/config/?refresh={SECRET}")
    server.get(f"{marker}?token={SECRET}")
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        # A path no consumer serves: refused at the handshake, and uvicorn logs the path.
        websockets.sync.client.connect(
            f"ws://127.0.0.1:{server.port}/ws/nowhere/{uuid.uuid4()}/?token={SECRET}",
            open_timeout=5,
        ).close()
    assert refused.value.response.status_code == 403
    return marker


@pytest.mark.checklist("P6.2", "P6.4")
@pytest.mark.slow
@pytest.mark.django_db
def test_request_id_is_echoed_and_on_the_log_lines_of_its_request(production_server):
    # given
    sent = str(uuid.uuid4())
    marker = f"/no-such-page-{uuid.uuid4().hex}/"

    # when a request with an id, and one without
    with_id = production_server.get(marker, headers={"X-Request-ID": sent})
    without_id = production_server.get(marker + "again/")

    # then both answer in the error shape with their ids
    assert with_id.status_code == 404
    assert with_id.json()["error"]["code"] == "not_found"
    assert with_id.headers["X-Request-ID"] == sent
    fresh = without_id.headers["X-Request-ID"]
    assert fresh != sent and uuid.UUID(fresh)

    # and Django's log line for each carries that request's id
    production_server.wait_for_log(f"Not Found: {marker}again/")
    records = [
        record
        for record in production_server.json_lines()
        if record.get("logger") == "django.request" and marker in record.get("message", "")
    ]
    by_path = {record["message"]: record["request_id"] for record in records}
    assert by_path == {f"Not Found: {marker}": sent, f"Not Found: {marker}again/": fresh}


@pytest.fixture(scope="module")
def production_output_with_tokens(production_server) -> str:
    """The production server's whole output after requests that carry tokens."""
    marker = send_tokens_in_query_strings(production_server)
    return production_server.wait_for_log(f"{marker}?token=[redacted]")


@pytest.mark.checklist("P6.1", "P6.2", "P8.13", "P12.4")
@pytest.mark.slow
@pytest.mark.django_db
def test_production_logs_are_json_objects_and_access_lines_mask_tokens(
    production_server, production_output_with_tokens
):
    # then every line on stdout and stderr is one JSON object with the standard keys
    records = production_server.json_lines() + production_server.json_lines(
        production_server.stderr()
    )
    assert len(records) > 5
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    loggers = {record["logger"] for record in records}
    assert {"uvicorn.access", "django.request", "gunicorn.error"} <= loggers

    # and the lines that print request paths print them with the tokens masked
    access = [r["message"] for r in records if r["logger"] == "uvicorn.access"]
    assert any("/health/?token=[redacted]" in message for message in access)
    assert any("access=[redacted]" in message for message in access)
    assert any("refresh=[redacted]" in message for message in access)
    websocket_lines = [r["message"] for r in records if "WebSocket /ws/" in r["message"]]
    assert websocket_lines and all("token=[redacted]" in line for line in websocket_lines)
    for record in records:
        assert SECRET not in record["message"], record


@pytest.mark.slow
@pytest.mark.django_db
def test_production_logs_never_contain_query_string_tokens(production_output_with_tokens):
    assert SECRET not in production_output_with_tokens


@pytest.mark.slow
@pytest.mark.django_db
def test_development_logs_are_readable_lines_without_tokens(development_server):
    # when
    marker = send_tokens_in_query_strings(development_server)

    # then the lines are for people, not machines
    output = development_server.wait_for_log(f"{marker}?token=[redacted]")
    lines = [line for line in development_server.stdout().splitlines() if line.strip()]
    assert len(lines) > 3
    for line in lines:
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            continue
        raise AssertionError(f"JSON log line in development: {parsed!r}")
    assert any(CONSOLE_LINE.match(line) and "uvicorn.access" in line for line in lines)
    assert any(CONSOLE_LINE.match(line) and "django.request" in line for line in lines)

    # and no token made it into any of them
    assert SECRET not in output
    assert "[redacted]" in output
