"""Security lines of the checklist no other test covers: CSRF, escaping, a health body that
tells nothing but check states. Real requests through the whole middleware chain."""

import pytest
from django.db import OperationalError
from django.test import Client
from django.utils.crypto import get_random_string

from accounts.models import User
from accounts.tests.factories import UserFactory
from core import health

pytestmark = pytest.mark.django_db

ME_URL = "/api/v1/auth/me/"
CHECK_STATES = {
    health.OK,
    health.UNAVAILABLE,
    health.TIMEOUT,
    health.IN_MEMORY,
    health.STALE,
    health.UNKNOWN,
}


@pytest.mark.checklist("P10.4")
def test_a_cookie_signed_in_request_without_the_csrf_token_is_refused():
    # given a staff member signed in with a session cookie (the admin's way in)
    user = UserFactory(is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    # when they change something through the API without the CSRF token
    refused = client.patch(ME_URL, {"name": "Forged"}, content_type="application/json")

    # then it is refused and nothing changed
    assert refused.status_code == 403, refused.content
    assert "CSRF" in refused.json()["error"]["message"]
    user.refresh_from_db()
    assert user.name != "Forged"

    # and with the token (cookie and header agreeing) the same request goes through
    token = get_random_string(32)
    client.cookies["csrftoken"] = token
    accepted = client.patch(
        ME_URL, {"name": "Asha"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 200, accepted.content
    user.refresh_from_db()
    assert user.name == "Asha"

    # and the admin's own forms refuse a POST without it
    anonymous = Client(enforce_csrf_checks=True)
    login = anonymous.post("/admin/login/", {"username": user.phone, "password": "x"})
    assert login.status_code == 403


@pytest.mark.checklist("P10.5")
def test_markup_in_user_data_is_escaped_in_the_admin_and_served_as_json_by_the_api(api_client):
    # given a user whose name is a script
    script = "<script>alert('owned')</script>"
    target = UserFactory(name=script)
    staff = User.objects.create_superuser("+919000000077", password="not-used-here")
    client = Client()
    client.force_login(staff)

    # when staff open the user list and the user reads their own profile
    page = client.get("/admin/accounts/user/")
    api_client.force_authenticate(target)
    me = api_client.get(ME_URL)

    # then the admin shows it as text, never as markup
    assert page.status_code == 200
    html = page.content.decode()
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in html
    assert script not in html
    # and the API hands it back as data, in JSON that browsers must not sniff as HTML
    assert me.status_code == 200
    assert me["Content-Type"] == "application/json"
    assert me["X-Content-Type-Options"] == "nosniff"
    assert me.json()["name"] == script


@pytest.mark.checklist("P10.17")
def test_health_names_only_check_states_even_when_a_check_fails_with_details(
    api_client, monkeypatch
):
    # given a database check failing with the kind of message a driver gives
    detail = (
        'connection to server at "10.1.2.3", port 6543 failed: password authentication failed '
        'for user "delivery_admin" (password=hunter2)'
    )

    def failing_database_check():
        raise OperationalError(detail)

    monkeypatch.setitem(health.CHECKS, "database", failing_database_check)

    # when a load balancer probes
    response = api_client.get("/health/")

    # then it learns that the database is unavailable, and nothing else
    assert response.status_code == 503
    body = response.json()
    assert set(body) == {"status", "checks"}
    assert body["status"] == "unavailable"
    assert set(body["checks"]) == {"database", "cache", "celery_beat"}
    assert body["checks"]["database"] == health.UNAVAILABLE
    assert set(body["checks"].values()) <= CHECK_STATES
    text = response.content.decode()
    for secret in ("10.1.2.3", "6543", "delivery_admin", "hunter2", "OperationalError"):
        assert secret not in text

    # and a healthy answer is made of the same fixed words: no versions, hosts or settings
    monkeypatch.undo()
    healthy = api_client.get("/health/")
    assert healthy.status_code == 200
    assert set(healthy.json()) == {"status", "checks"}
    assert set(healthy.json()["checks"].values()) <= CHECK_STATES
