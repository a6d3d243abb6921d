"""Helpers for the accounts tests: the auth URLs, signing in through the API, reading codes."""

import io
import re

from django.core.management import call_command

OTP_REQUEST_URL = "/api/v1/auth/otp/request/"
OTP_VERIFY_URL = "/api/v1/auth/otp/verify/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
LOGOUT_URL = "/api/v1/auth/logout/"
ME_URL = "/api/v1/auth/me/"

_OUTBOX_CODE = re.compile(r"\b(\d{6}) is your login code\b")


def code_from_outbox(phone: str) -> str:
    """The newest login code sent to `phone`, read the way a developer does: sms_outbox."""
    out = io.StringIO()
    call_command("sms_outbox", phone=phone, limit=1, stdout=out)
    return login_code_in(out.getvalue(), phone)


def login_code_in(outbox: str, phone: str) -> str:
    """The login code in what `manage.py sms_outbox --phone PHONE --limit 1` printed."""
    match = _OUTBOX_CODE.search(outbox)
    assert match, f"no login code in the outbox for {phone}:\n{outbox}"
    return match.group(1)


def bearer(access: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {access}"}


def sign_in(client, phone: str, role: str = "customer") -> dict:
    """Asks for a code and verifies it through the API; returns the verify answer's body."""
    assert client.post(OTP_REQUEST_URL, {"phone": phone}, format="json").status_code == 202
    response = client.post(
        OTP_VERIFY_URL,
        {"phone": phone, "otp": code_from_outbox(phone), "role": role},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()
