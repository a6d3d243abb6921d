"""The OTP rules, each through the HTTP API: answers, cooldown, cap, expiry, lockout, replay."""

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone
from prometheus_client import REGISTRY

from accounts.models import OtpChallenge, SmsMessage, User
from accounts.services import otp_challenge_purge
from accounts.tests.factories import OtpChallengeFactory, UserFactory, phone_number
from accounts.tests.support import OTP_REQUEST_URL, OTP_VERIFY_URL, code_from_outbox

pytestmark = pytest.mark.django_db

PHONE = "+919812345678"


def request_code(client, phone=PHONE, **extra):
    return client.post(OTP_REQUEST_URL, {"phone": phone}, format="json", **extra)


def verify(client, otp, phone=PHONE, role="customer", **extra):
    body = {"phone": phone, "otp": otp, "role": role, **extra}
    return client.post(OTP_VERIFY_URL, body, format="json")


def error_code(response) -> str:
    return response.json()["error"]["code"]


# --- Request ---------------------------------------------------------------------------------


def test_request_answers_202_and_stores_only_an_hmac_of_the_code(api_client):
    # when
    response = request_code(api_client, "98123 45678")

    # then
    assert response.status_code == 202
    assert response.json() == {"expires_in": 300, "resend_after": 60}
    code = code_from_outbox(PHONE)
    challenge = OtpChallenge.objects.get(phone=PHONE)
    assert code not in challenge.code_hmac
    assert len(challenge.code_hmac) == 64
    assert challenge.ip == "127.0.0.1"
    assert code not in response.content.decode()


def test_known_and_unknown_numbers_get_identical_answers(api_client):
    # given
    known = UserFactory(phone=phone_number(1)).phone
    unknown = phone_number(2)

    # when
    for_known = request_code(api_client, known)
    for_unknown = request_code(api_client, unknown)

    # then
    assert for_known.status_code == for_unknown.status_code == 202
    assert for_known.content == for_unknown.content
    headers = {"Content-Type", "Retry-After", "Content-Length"}
    assert {h: for_known.get(h) for h in headers} == {h: for_unknown.get(h) for h in headers}
    # Both numbers really get a code; nobody is created before a code is verified.
    assert SmsMessage.objects.filter(phone__in=[known, unknown]).count() == 2
    assert not User.objects.filter(phone=unknown).exists()


def test_a_second_request_inside_the_cooldown_is_answered_429_with_retry_after(api_client):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        # given
        assert request_code(api_client).status_code == 202
        clock.shift(timedelta(seconds=20))

        # when
        refused = request_code(api_client)

        # then
        assert refused.status_code == 429
        assert error_code(refused) == "otp_cooldown"
        assert refused["Retry-After"] == "40"

        clock.shift(timedelta(seconds=40))
        assert request_code(api_client).status_code == 202
    assert OtpChallenge.objects.filter(phone=PHONE).count() == 2


def test_codes_per_phone_per_hour_are_capped_in_the_database(api_client):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        # given: five codes, each after the cooldown
        for _ in range(5):
            assert request_code(api_client).status_code == 202
            clock.shift(timedelta(seconds=61))
        # The cache forgets everything (a Redis flush or failover); the database does not.
        cache.clear()

        # when
        refused = request_code(api_client)

        # then: the first code leaves the one-hour window 3600 - 5 * 61 seconds from now
        assert refused.status_code == 429
        assert error_code(refused) == "throttled"
        assert refused["Retry-After"] == str(3600 - 5 * 61)

        clock.shift(timedelta(seconds=3600 - 5 * 61 + 1))
        assert request_code(api_client).status_code == 202


def test_a_number_outside_the_allowed_countries_gets_no_code(api_client, settings):
    # given codes for Indian numbers only (the default), and a UK mobile number
    settings.OTP_ALLOWED_COUNTRIES = ["IN"]

    response = request_code(api_client, "+447400123456")

    assert response.status_code == 400
    assert error_code(response) == "phone_country_not_served"
    assert "IN" in response.json()["error"]["fields"]["phone"][0]
    assert not OtpChallenge.objects.exists() and not SmsMessage.objects.exists()
    # and a country that is allowed gets its code
    settings.OTP_ALLOWED_COUNTRIES = ["IN", "GB"]
    assert request_code(api_client, "+447400123456").status_code == 202


def test_the_hourly_sms_budget_for_all_numbers_refuses_new_codes_with_503(api_client, settings):
    settings.SMS_HOURLY_BUDGET = 3
    with time_machine.travel(timezone.now(), tick=False) as clock:
        # given the hour's budget spent by three numbers, a minute apart
        for index in range(3):
            assert request_code(api_client, phone_number(index)).status_code == 202
            clock.shift(timedelta(seconds=60))
        refused_before = refused_count("sms_budget")

        # when a fourth number asks
        refused = request_code(api_client, phone_number(3))

        # then it is refused, told when to try again, counted, and nothing is sent
        assert refused.status_code == 503
        assert error_code(refused) == "sms_budget_spent"
        assert refused["Retry-After"] == str(3600 - 3 * 60)
        assert refused_count("sms_budget") == refused_before + 1
        assert not OtpChallenge.objects.filter(phone=phone_number(3)).exists()
        assert SmsMessage.objects.count() == 3

        # and once the first code leaves the hour, a code goes out again
        clock.shift(timedelta(seconds=3600 - 3 * 60 + 1))
        assert request_code(api_client, phone_number(3)).status_code == 202


def refused_count(reason: str) -> float:
    return REGISTRY.get_sample_value("otp_requests_refused_total", {"reason": reason}) or 0.0


def test_an_invalid_phone_number_is_refused_with_the_field_named(api_client):
    response = request_code(api_client, "12345")

    assert response.status_code == 400
    assert error_code(response) == "invalid"
    assert "phone" in response.json()["error"]["fields"]
    assert not OtpChallenge.objects.exists()


# --- Verify ----------------------------------------------------------------------------------


def test_verify_signs_a_new_customer_in_and_creates_the_account(api_client):
    # given
    request_code(api_client)

    # when
    response = verify(api_client, code_from_outbox(PHONE))

    # then
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh", "user"}
    user = User.objects.get(phone=PHONE)
    assert body["user"] == {"id": str(user.id), "phone": PHONE, "name": "", "roles": ["customer"]}
    assert user.is_customer and not user.is_rider and not user.is_staff
    assert not user.has_usable_password()
    assert user.last_login is not None


def test_verify_as_rider_adds_the_rider_role_to_an_existing_customer(api_client):
    # given
    UserFactory(phone=PHONE, is_customer=True)
    OtpChallengeFactory(phone=PHONE, code="654321")

    # when
    response = verify(api_client, "654321", role="rider")

    # then
    assert response.status_code == 200
    assert response.json()["user"]["roles"] == ["customer", "rider"]


@pytest.mark.checklist("P7.17")
def test_an_expired_code_is_refused(api_client):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        # given
        request_code(api_client)
        code = code_from_outbox(PHONE)
        clock.shift(timedelta(seconds=300))

        # when
        response = verify(api_client, code)

    # then
    assert response.status_code == 400
    assert error_code(response) == "otp_expired"
    assert not User.objects.filter(phone=PHONE).exists()


@pytest.mark.checklist("P7.17")
def test_a_code_still_works_one_second_before_it_expires(api_client):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        request_code(api_client)
        code = code_from_outbox(PHONE)
        clock.shift(timedelta(seconds=299))

        assert verify(api_client, code).status_code == 200


def test_five_wrong_codes_burn_the_challenge(api_client):
    # given
    OtpChallengeFactory(phone=PHONE, code="111111")

    # when: four wrong tries are answered otp_invalid, the fifth burns the code
    answers = [error_code(verify(api_client, "999999")) for _ in range(5)]

    # then
    assert answers == ["otp_invalid"] * 4 + ["otp_locked"]
    right = verify(api_client, "111111")
    assert right.status_code == 400
    assert error_code(right) == "otp_locked"
    challenge = OtpChallenge.objects.get(phone=PHONE)
    assert challenge.attempts == 5
    assert challenge.burned_at is not None
    assert challenge.used_at is None


def test_a_used_code_cannot_be_replayed(api_client):
    # given
    OtpChallengeFactory(phone=PHONE, code="222222")
    assert verify(api_client, "222222").status_code == 200

    # when
    replay = verify(api_client, "222222")

    # then
    assert replay.status_code == 400
    assert error_code(replay) == "otp_invalid"


def test_a_new_code_replaces_the_previous_one(api_client):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        # given
        request_code(api_client)
        first = code_from_outbox(PHONE)
        clock.shift(timedelta(seconds=61))
        request_code(api_client)
        second = code_from_outbox(PHONE)

        # when / then (the two random codes may coincide, one time in a million)
        if first != second:
            assert error_code(verify(api_client, first)) == "otp_invalid"
        assert verify(api_client, second).status_code == 200


def test_verify_without_any_code_requested_is_otp_invalid_for_known_and_unknown(api_client):
    UserFactory(phone=phone_number(3))

    for phone in (phone_number(3), phone_number(4)):
        response = verify(api_client, "123456", phone=phone)
        assert response.status_code == 400
        assert error_code(response) == "otp_invalid"


def test_a_malformed_code_is_a_validation_error_and_costs_no_try(api_client):
    OtpChallengeFactory(phone=PHONE)

    response = verify(api_client, "12ab56")

    assert response.status_code == 400
    assert error_code(response) == "invalid"
    assert "otp" in response.json()["error"]["fields"]
    assert OtpChallenge.objects.get(phone=PHONE).attempts == 0


def test_staff_role_signs_in_a_staff_account_with_its_password_without_adding_roles(api_client):
    # given
    staff = UserFactory(phone=PHONE, is_staff=True, is_customer=False)
    staff.set_password("a long staff password")
    staff.save(update_fields=["password"])
    OtpChallengeFactory(phone=PHONE, code="333333")

    # when
    response = verify(api_client, "333333", role="staff", password="a long staff password")

    # then
    assert response.status_code == 200
    assert response.json()["user"]["roles"] == ["staff"]


@pytest.mark.parametrize("password", [None, "", "a wrong guess"])
def test_an_sms_code_alone_gives_no_staff_token_and_a_wrong_password_uses_the_code_up(
    api_client, password
):
    # given a staff account (a SIM swap gave someone its phone's codes)
    staff = UserFactory(phone=PHONE, is_staff=True, is_customer=False)
    staff.set_password("a long staff password")
    staff.save(update_fields=["password"])
    OtpChallengeFactory(phone=PHONE, code="333333")

    # when the right code comes without the right password
    extra = {} if password is None else {"password": password}
    refused = verify(api_client, "333333", role="staff", **extra)

    # then no token, and the code is used up: the right password cannot follow with it
    assert refused.status_code == 403
    assert error_code(refused) == "staff_password_invalid"
    assert "access" not in refused.json()
    again = verify(api_client, "333333", role="staff", password="a long staff password")
    assert again.status_code == 400 and error_code(again) == "otp_locked"


def test_staff_role_is_refused_to_a_non_staff_number_and_the_code_stays_usable(api_client):
    # given
    OtpChallengeFactory(phone=PHONE, code="444444")

    # when
    refused = verify(api_client, "444444", role="staff")

    # then
    assert refused.status_code == 403
    assert error_code(refused) == "not_staff"
    assert not User.objects.filter(phone=PHONE).exists()
    assert verify(api_client, "444444", role="customer").status_code == 200


def test_a_disabled_account_cannot_sign_in(api_client):
    UserFactory(phone=PHONE, is_active=False)
    OtpChallengeFactory(phone=PHONE, code="555555")

    response = verify(api_client, "555555")

    assert response.status_code == 403
    assert error_code(response) == "account_disabled"


def test_purging_old_challenges_keeps_the_last_hour_that_the_cap_counts():
    # given
    with time_machine.travel(timezone.now() - timedelta(days=2), tick=False):
        old = OtpChallengeFactory.create_batch(3)
    recent = OtpChallengeFactory()

    # when
    deleted = otp_challenge_purge(batch_size=2)

    # then
    assert deleted == 3
    assert list(OtpChallenge.objects.all()) == [recent]
    assert not OtpChallenge.objects.filter(pk__in=[c.pk for c in old]).exists()
    with pytest.raises(ValueError):
        otp_challenge_purge(older_than=timedelta(minutes=30))
