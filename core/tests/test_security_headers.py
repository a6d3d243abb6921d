"""A production server sends the security headers and cookie flags, and redirects plain HTTP."""

import json
import re
import secrets
from http.cookies import SimpleCookie

import pytest

from core.tests.production_env import PUBLIC_HOST, WEB_ORIGIN, production_env
from devstack.commands import run_python
from devstack.web import start_server

# django_db: pytest-django creates the test database (which the server uses) only for a run
# that has database tests in it.
pytestmark = [pytest.mark.slow, pytest.mark.django_db]

HTTPS = {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https"}  # as the TLS-terminating proxy
PLAIN_HTTP = {"Host": PUBLIC_HOST}
PROBE_HOST = "10.0.0.7"  # load balancers probe the container by its IP address
ONE_YEAR = 31536000

_CREATE_STAFF = """
import json, random, sys, django
django.setup()
from django.contrib.auth import get_user_model
User = get_user_model()
while True:
    phone = "+9198" + "".join(random.choices("0123456789", k=8))
    if not User.objects.filter(phone=phone).exists():
        break
user = User.objects.create_user(phone, sys.argv[1], is_staff=True, name="security headers test")
print(json.dumps({"id": str(user.pk), "phone": user.phone}))
"""

_DELETE_STAFF = """
import sys, django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
user_id, session_keys = sys.argv[1], sys.argv[2:]
Session.objects.filter(session_key__in=session_keys).delete()
# Sessions of a login whose response never reached the test.
for session in Session.objects.all():
    if session.get_decoded().get("_auth_user_id") == user_id:
        session.delete()
get_user_model().objects.filter(pk=user_id).delete()
"""


@pytest.fixture(scope="module")
def env(django_db_setup) -> dict[str, str]:
    # One secret key for the server and the fixtures: the cleanup must read its sessions.
    # django_db_setup: the server and the fixtures use the migrated test database.
    return production_env()


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    server = start_server(env, tmp_path_factory.mktemp("gunicorn"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def staff_user(env):
    """A staff user in the database the server uses, deleted with its sessions after."""
    password = secrets.token_urlsafe(24)
    created = run_python(_CREATE_STAFF, password, env=env)
    assert created.returncode == 0, created.stderr
    user = json.loads(created.stdout.strip().splitlines()[-1])
    user.update(password=password, session_keys=[])
    yield user
    deleted = run_python(_DELETE_STAFF, user["id"], *user["session_keys"], env=env)
    assert deleted.returncode == 0, deleted.stderr


def cookies_set(response) -> SimpleCookie:
    jar = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return jar


def assert_secure_http_only_lax(cookie) -> None:
    assert cookie["secure"] is True
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


@pytest.mark.checklist("P1.9", "P1.14", "P10.5", "P10.6", "P10.8")
@pytest.mark.parametrize("path", ["/api/config/", "/admin/login/"])
def test_https_responses_carry_the_security_headers(server, path):
    # when
    response = server.get(path, headers=HTTPS)

    # then
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == (
        f"max-age={ONE_YEAR}; includeSubDomains; preload"
    )
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.checklist("P1.8", "P8.5", "P10.7")
def test_plain_http_is_redirected_permanently_to_https(server):
    # when
    response = server.get("/api/config/?lang=en", headers=PLAIN_HTTP)

    # then
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{PUBLIC_HOST}/api/config/?lang=en"


@pytest.mark.checklist("P6.8", "P6.14", "P8.10", "P8.15", "P9.1", "P12.17")
def test_health_answers_a_plain_http_probe_addressed_by_ip(server):
    # when
    response = server.get("/health/", headers={"Host": PROBE_HOST})

    # then neither redirected to HTTPS nor refused for its Host
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert response.json()["status"] == "ok"


@pytest.mark.checklist("P6.15", "P6.19")
def test_metrics_answer_a_plain_http_scrape_addressed_by_ip(server):
    # when Prometheus scrapes the pod by its IP over plain HTTP
    response = server.get("/metrics", headers={"Host": PROBE_HOST})

    # then
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "django_http_requests_total_by_view_transport_method_total" in response.text


@pytest.mark.checklist("P1.3")
@pytest.mark.parametrize("headers", [{}, {"X-Forwarded-Proto": "https"}], ids=["http", "https"])
def test_other_paths_refuse_a_host_that_is_not_allowed(server, headers):
    # when
    response = server.get("/api/config/", headers={"Host": PROBE_HOST, **headers})

    # then a 400 in the API's error shape, never a redirect to https://10.0.0.7
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


@pytest.mark.checklist("P1.4", "P7.7", "P10.14")
def test_cors_allows_only_the_configured_origin(server):
    # when
    allowed = server.get("/api/config/", headers={**HTTPS, "Origin": WEB_ORIGIN})
    other = server.get("/api/config/", headers={**HTTPS, "Origin": "https://evil.example.com"})

    # then
    assert allowed.headers["Access-Control-Allow-Origin"] == WEB_ORIGIN
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.checklist("P1.10", "P1.12", "P10.4", "P10.9", "P10.10")
def test_csrf_cookie_is_secure_http_only_and_lax(server):
    # when
    response = server.get("/admin/login/", headers=HTTPS)

    # then
    assert response.status_code == 200
    assert_secure_http_only_lax(cookies_set(response)["csrftoken"])


@pytest.mark.checklist("P1.10", "P1.11", "P1.13", "P10.9", "P10.10")
def test_session_cookie_after_admin_login_is_secure_http_only_and_lax(server, staff_user):
    # given the login form and its CSRF cookie (sent back by hand: the cookie is Secure and
    # this test client speaks plain HTTP to the server behind the simulated proxy)
    login_page = server.get("/admin/login/", headers=HTTPS)
    csrf_cookie = cookies_set(login_page)["csrftoken"].value
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)[1]

    # when
    response = server.request(
        "POST",
        "/admin/login/?next=/admin/",
        headers={
            **HTTPS,
            "Origin": f"https://{PUBLIC_HOST}",
            "Referer": f"https://{PUBLIC_HOST}/admin/login/",
            "Cookie": f"csrftoken={csrf_cookie}",
        },
        data={
            "username": staff_user["phone"],
            "password": staff_user["password"],
            "csrfmiddlewaretoken": form_token,
            "next": "/admin/",
        },
    )

    # then the login succeeded and its session cookie has every flag
    assert response.status_code == 302, response.text
    assert response.headers["Location"] == "/admin/"
    session_cookie = cookies_set(response)["sessionid"]
    staff_user["session_keys"].append(session_cookie.value)
    assert_secure_http_only_lax(session_cookie)
    assert response.headers["Strict-Transport-Security"].startswith(f"max-age={ONE_YEAR}")
