"""JWTs through the HTTP API: me/, short-lived access, refresh rotation, blacklist, logout."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import UserFactory, phone_number
from accounts.tests.support import LOGOUT_URL, ME_URL, REFRESH_URL, bearer, sign_in

pytestmark = pytest.mark.django_db

PHONE = "+919812345678"


def refresh(client, token):
    return client.post(REFRESH_URL, {"refresh": token}, format="json")


def test_me_returns_the_signed_in_user(api_client):
    # given
    tokens = sign_in(api_client, PHONE, role="rider")

    # when
    response = api_client.get(ME_URL, **bearer(tokens["access"]))

    # then
    assert response.status_code == 200
    user = User.objects.get(phone=PHONE)
    assert response.json() == {"id": str(user.id), "phone": PHONE, "name": "", "roles": ["rider"]}


def test_me_without_a_token_is_401_in_the_error_shape(api_client):
    response = api_client.get(ME_URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_patch_me_changes_the_name(api_client):
    tokens = sign_in(api_client, PHONE)

    response = api_client.patch(
        ME_URL, {"name": "  Asha  "}, format="json", **bearer(tokens["access"])
    )

    assert response.status_code == 200
    assert response.json()["name"] == "Asha"
    assert User.objects.get(phone=PHONE).name == "Asha"


def test_patch_me_refuses_any_field_but_name(api_client):
    tokens = sign_in(api_client, PHONE)

    response = api_client.patch(
        ME_URL,
        {"name": "Asha", "phone": phone_number(9), "roles": ["staff"]},
        format="json",
        **bearer(tokens["access"]),
    )

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"phone", "roles"}
    user = User.objects.get(phone=PHONE)
    assert (user.name, user.is_staff) == ("", False)


@pytest.mark.checklist("P10.13")
def test_access_tokens_are_short_lived(api_client):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        tokens = sign_in(api_client, PHONE)
        clock.shift(timedelta(minutes=14))
        assert api_client.get(ME_URL, **bearer(tokens["access"])).status_code == 200

        clock.shift(timedelta(minutes=1, seconds=1))
        expired = api_client.get(ME_URL, **bearer(tokens["access"]))

    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "token_not_valid"


@pytest.mark.checklist("P10.13")
def test_refresh_rotates_and_the_old_refresh_token_is_refused(api_client):
    # given
    tokens = sign_in(api_client, PHONE)

    # when
    rotated = refresh(api_client, tokens["refresh"])

    # then
    assert rotated.status_code == 200
    new = rotated.json()
    assert set(new) == {"access", "refresh"}
    assert new["refresh"] != tokens["refresh"]
    assert api_client.get(ME_URL, **bearer(new["access"])).status_code == 200

    reused = refresh(api_client, tokens["refresh"])
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "token_not_valid"

    assert refresh(api_client, new["refresh"]).status_code == 200


def test_an_access_token_is_not_a_refresh_token(api_client):
    tokens = sign_in(api_client, PHONE)

    response = refresh(api_client, tokens["access"])

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"


def test_refresh_is_refused_once_the_account_is_disabled(api_client):
    tokens = sign_in(api_client, PHONE)
    User.objects.filter(phone=PHONE).update(is_active=False)

    assert refresh(api_client, tokens["refresh"]).status_code == 401


def test_refresh_of_garbage_is_401_not_500(api_client):
    response = refresh(api_client, "not-a-jwt")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"


@pytest.mark.checklist("P10.13")
def test_logout_blacklists_the_refresh_token(api_client):
    # given
    tokens = sign_in(api_client, PHONE)

    # when
    response = api_client.post(
        LOGOUT_URL, {"refresh": tokens["refresh"]}, format="json", **bearer(tokens["access"])
    )

    # then
    assert response.status_code == 204
    refused = refresh(api_client, tokens["refresh"])
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "token_not_valid"


def test_logout_needs_a_signed_in_user(api_client):
    tokens = sign_in(api_client, PHONE)

    response = api_client.post(LOGOUT_URL, {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 401
    assert refresh(api_client, tokens["refresh"]).status_code == 200


def test_logout_cannot_revoke_someone_elses_refresh_token(api_client):
    # given
    mine = sign_in(api_client, PHONE)
    UserFactory(phone=phone_number(5))
    theirs = sign_in(api_client, phone_number(5))

    # when
    response = api_client.post(
        LOGOUT_URL, {"refresh": theirs["refresh"]}, format="json", **bearer(mine["access"])
    )

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "token_not_valid"
    assert refresh(api_client, theirs["refresh"]).status_code == 200
