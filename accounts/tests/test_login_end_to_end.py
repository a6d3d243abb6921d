"""A whole login as a developer runs it: code by SMS (read with sms_outbox), JWTs, logout."""

import io
import logging
import re

import pytest
from django.core.management import CommandError, call_command

from accounts.models import SmsMessage
from accounts.tests.support import (
    LOGOUT_URL,
    ME_URL,
    OTP_REQUEST_URL,
    OTP_VERIFY_URL,
    REFRESH_URL,
    bearer,
)

# Real commits, so the SMS task queued with on_commit runs (inline, see conftest) as in production.
pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+919876543210"


@pytest.mark.checklist("P9.3")
def test_login_with_the_code_from_sms_outbox_then_refresh_and_logout(api_client, caplog):
    caplog.set_level(logging.DEBUG)

    # 1. The app asks for a code.
    requested = api_client.post(OTP_REQUEST_URL, {"phone": "98765 43210"}, format="json")
    assert requested.status_code == 202

    # 2. The developer reads it from the dummy provider's outbox.
    out = io.StringIO()
    call_command("sms_outbox", phone=PHONE, stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert f"{PHONE}  dummy/sent  " in lines[0]
    code = re.search(r"\b(\d{6}) is your login code\b", lines[0]).group(1)
    assert SmsMessage.objects.get(phone=PHONE).status == SmsMessage.Status.SENT

    # 3. The app signs in with it, as a customer.
    verified = api_client.post(
        OTP_VERIFY_URL, {"phone": PHONE, "otp": code, "role": "customer"}, format="json"
    )
    assert verified.status_code == 200
    tokens = verified.json()
    assert tokens["user"]["phone"] == PHONE
    assert tokens["user"]["roles"] == ["customer"]

    # 4. The access token opens me/.
    me = api_client.get(ME_URL, **bearer(tokens["access"]))
    assert me.status_code == 200
    assert me.json()["id"] == tokens["user"]["id"]

    # 5. Refreshing rotates the refresh token.
    rotated = api_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json")
    assert rotated.status_code == 200
    current = rotated.json()
    assert current["refresh"] != tokens["refresh"]
    assert api_client.get(ME_URL, **bearer(current["access"])).status_code == 200

    # 6. Logging out ends the current refresh token; the rotated-away one was already dead.
    logout = api_client.post(
        LOGOUT_URL, {"refresh": current["refresh"]}, format="json", **bearer(current["access"])
    )
    assert logout.status_code == 204
    for old in (tokens["refresh"], current["refresh"]):
        refused = api_client.post(REFRESH_URL, {"refresh": old}, format="json")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "token_not_valid"

    # Nothing along the way wrote the code or a token to the logs.
    for secret in (code, tokens["access"], tokens["refresh"], current["refresh"]):
        assert not re.search(rf"\b{re.escape(secret)}\b", caplog.text)
    assert "****** is your login code" in caplog.text


def test_sms_outbox_says_so_when_empty_and_refuses_a_bad_number():
    out = io.StringIO()
    call_command("sms_outbox", phone=PHONE, stdout=out)
    assert out.getvalue().strip() == f"The outbox is empty for {PHONE}."

    with pytest.raises(CommandError, match="--phone"):
        call_command("sms_outbox", phone="12", stdout=io.StringIO())
