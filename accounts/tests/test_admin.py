"""The admin shows login codes' challenges and the SMS outbox to staff, read-only."""

import pytest

from accounts.tests.factories import OtpChallengeFactory, UserFactory
from accounts.tests.support import OTP_REQUEST_URL

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_staff_see_challenges_without_their_hmac_and_cannot_edit_them(staff_client):
    challenge = OtpChallengeFactory()

    listing = staff_client.get("/admin/accounts/otpchallenge/")
    detail = staff_client.get(f"/admin/accounts/otpchallenge/{challenge.pk}/change/")

    assert listing.status_code == 200
    assert challenge.phone in listing.content.decode()
    assert detail.status_code == 200
    assert challenge.code_hmac not in detail.content.decode()
    assert staff_client.get("/admin/accounts/otpchallenge/add/").status_code == 403
    assert (
        staff_client.post(f"/admin/accounts/otpchallenge/{challenge.pk}/change/", {}).status_code
        == 403
    )


def test_staff_see_the_sms_outbox(staff_client, api_client):
    api_client.post(OTP_REQUEST_URL, {"phone": "+919812345678"}, format="json")

    listing = staff_client.get("/admin/accounts/smsmessage/")

    assert listing.status_code == 200
    assert "+919812345678" in listing.content.decode()
    assert staff_client.get("/admin/accounts/smsmessage/add/").status_code == 403
