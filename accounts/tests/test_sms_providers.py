"""SMS providers faked at the HTTP boundary with a real local server: shape, timeouts, retries."""

import base64
import logging
import re
import time

import pytest
from django.test import override_settings
from werkzeug import Response

from accounts.models import SmsMessage
from accounts.tasks import send_sms
from accounts.tests.support import OTP_REQUEST_URL, OTP_VERIFY_URL, code_from_outbox
from config.celery import app as celery_app

pytestmark = pytest.mark.django_db

PHONE = "+919812345678"
MSG91_PATH = "/api/v5/flow"
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_PATH = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


@pytest.fixture
def msg91(httpserver):
    with override_settings(
        SMS_PROVIDER="msg91",
        MSG91_BASE_URL=httpserver.url_for("/"),
        MSG91_AUTH_KEY="test-auth-key",
        MSG91_OTP_TEMPLATE_ID="tmpl-login-otp",
        SMS_HTTP_TIMEOUT_SECONDS=0.5,
    ):
        yield httpserver


@pytest.fixture
def twilio(httpserver):
    with override_settings(
        SMS_PROVIDER="twilio",
        TWILIO_BASE_URL=httpserver.url_for("/"),
        TWILIO_ACCOUNT_SID=TWILIO_SID,
        TWILIO_AUTH_TOKEN="test-auth-token",
        TWILIO_FROM_NUMBER="+15005550006",
        SMS_HTTP_TIMEOUT_SECONDS=0.5,
    ):
        yield httpserver


@pytest.fixture
def request_code(api_client, django_capture_on_commit_callbacks):
    """POSTs otp/request/ and runs what it queued after commit: the send_sms task, inline."""

    def request(phone=PHONE):
        with django_capture_on_commit_callbacks(execute=True):
            response = api_client.post(OTP_REQUEST_URL, {"phone": phone}, format="json")
        assert response.status_code == 202
        return SmsMessage.objects.get(phone=phone)

    return request


@pytest.mark.checklist("P5.14", "P9.19", configured=True)
def test_send_sms_is_routed_to_the_high_queue():
    route = celery_app.amqp.router.route({}, send_sms.name)

    assert route["queue"].name == "high"


def test_msg91_request_shape_and_the_code_it_carries_signs_in(msg91, request_code, api_client):
    # given
    msg91.expect_oneshot_request(
        MSG91_PATH, method="POST", headers={"authkey": "test-auth-key"}
    ).respond_with_json({"type": "success", "message": "3763646c3058303633383734"})

    # when
    sms = request_code()

    # then: the request MSG91's flow API expects
    msg91.check_assertions()
    ((request, _),) = msg91.log
    body = request.get_json()
    assert body["template_id"] == "tmpl-login-otp"
    assert body["short_url"] == "0"
    [recipient] = body["recipients"]
    assert recipient["mobiles"] == "919812345678"
    code = recipient["otp"]
    assert len(code) == 6 and code.isdigit()
    # the message is settled and the code no longer readable in our database
    sms.refresh_from_db()
    assert (sms.status, sms.attempts) == (SmsMessage.Status.SENT, 1)
    assert sms.provider_message_id == "3763646c3058303633383734"
    assert code not in sms.body and code not in str(sms.params)
    # and the code that went out really signs the user in
    verified = api_client.post(
        OTP_VERIFY_URL, {"phone": PHONE, "otp": code, "role": "customer"}, format="json"
    )
    assert verified.status_code == 200


def test_twilio_request_shape(twilio, request_code):
    # given
    twilio.expect_oneshot_request(TWILIO_PATH, method="POST").respond_with_json(
        {"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}, status=201
    )

    # when
    sms = request_code()

    # then
    twilio.check_assertions()
    ((request, _),) = twilio.log
    expected_auth = base64.b64encode(f"{TWILIO_SID}:test-auth-token".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert request.mimetype == "application/x-www-form-urlencoded"
    assert request.form["To"] == PHONE
    assert request.form["From"] == "+15005550006"
    assert "is your login code" in request.form["Body"]
    sms.refresh_from_db()
    assert sms.status == SmsMessage.Status.SENT
    assert sms.provider_message_id == "SM0123456789abcdef0123456789abcdef"


@pytest.mark.checklist("P9.17")
def test_a_provider_5xx_is_retried_and_the_retry_succeeds(msg91, request_code):
    # given: MSG91 is briefly unavailable, then recovers
    msg91.expect_ordered_request(MSG91_PATH, method="POST").respond_with_data(
        "upstream busy", status=503
    )
    msg91.expect_ordered_request(MSG91_PATH, method="POST").respond_with_json(
        {"type": "success", "message": "req-2"}
    )

    # when
    sms = request_code()

    # then
    msg91.check_assertions()
    assert len(msg91.log) == 2
    sms.refresh_from_db()
    assert (sms.status, sms.attempts, sms.error) == (SmsMessage.Status.SENT, 2, "")
    assert sms.provider_message_id == "req-2"


def test_a_provider_timeout_is_retried_then_the_message_fails_cleanly(twilio, request_code, caplog):
    # given: Twilio answers slower than SMS_HTTP_TIMEOUT_SECONDS (0.5 s), every time
    def slow(request):
        time.sleep(0.8)
        return Response('{"sid": "SMlate"}', status=201, content_type="application/json")

    twilio.expect_request(TWILIO_PATH, method="POST").respond_with_handler(slow)

    # when: the user still gets the normal answer; the worker retries, then gives up
    with caplog.at_level(logging.WARNING, logger="accounts"):
        sms = request_code()

    # then: the first try and three retries, each cut off by the timeout. The fake server
    # handles one request at a time, so it logs the last ones after the client gave up on them.
    deadline = time.monotonic() + 10
    while len(twilio.log) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(twilio.log) == 4
    sms.refresh_from_db()
    assert sms.status == SmsMessage.Status.FAILED
    assert sms.attempts == 4
    assert "timed out" in sms.error
    assert "is your login code" in sms.body and not any(c.isdigit() for c in sms.body[:6])
    assert "giving up" in caplog.text


def test_a_provider_refusal_is_not_retried(twilio, request_code):
    twilio.expect_request(TWILIO_PATH, method="POST").respond_with_json(
        {"code": 20003, "message": "Authenticate"}, status=401
    )

    sms = request_code()

    assert len(twilio.log) == 1
    sms.refresh_from_db()
    assert (sms.status, sms.attempts) == (SmsMessage.Status.FAILED, 1)
    assert "HTTP 401" in sms.error


def test_a_redelivered_task_does_not_send_twice(msg91, request_code):
    msg91.expect_request(MSG91_PATH, method="POST").respond_with_json(
        {"type": "success", "message": "req-3"}
    )
    sms = request_code()

    # when: the broker hands the same task out again (acks_late after a worker crash)
    send_sms.delay(sms.pk)

    # then
    assert len(msg91.log) == 1


def test_the_dummy_provider_logs_the_message_with_the_code_masked(request_code, caplog):
    # when
    with caplog.at_level(logging.INFO, logger="accounts"):
        sms = request_code()

    # then
    code = code_from_outbox(PHONE)
    sms.refresh_from_db()
    assert sms.status == SmsMessage.Status.SENT
    assert code in sms.body  # the outbox keeps it: reading it back is its purpose
    assert "dummy SMS to +91******5678: ****** is your login code" in caplog.text
    assert not re.search(rf"\b{code}\b", caplog.text)
