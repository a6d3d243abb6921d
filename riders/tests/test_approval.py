"""Ops approve riders with `manage.py rider_approve <phone>` or from the admin."""

import io
from contextlib import redirect_stderr

import pytest
from django.core.management import CommandError, ManagementUtility, call_command
from django.urls import reverse

from accounts.tests.factories import UserFactory
from riders.models import Rider
from riders.tests.factories import RiderFactory, RiderUserFactory

pytestmark = pytest.mark.django_db


def approve(phone: str) -> str:
    out = io.StringIO()
    call_command("rider_approve", phone, stdout=out)
    return out.getvalue()


def test_the_command_approves_a_rider_by_phone_in_any_format():
    rider = RiderFactory(approved=False, user__phone="+919845012345")

    output = approve("98450 12345")

    rider.refresh_from_db()
    assert rider.approved is True
    assert "Approved rider +919845012345" in output
    assert "already approved" in approve("+919845012345")


def test_the_command_creates_the_profile_of_a_rider_who_never_opened_it():
    user = RiderUserFactory(phone="+919845012346")

    approve(user.phone)

    assert Rider.objects.get(user=user).approved is True


def test_an_unknown_phone_is_a_clear_error_and_a_non_zero_exit():
    # through call_command: the CommandError itself
    with pytest.raises(CommandError, match=r"No account has the phone number \+919845099999"):
        approve("+919845099999")

    # and as ops run it: exit status 1 and the message on stderr
    err = io.StringIO()
    utility = ManagementUtility(["manage.py", "rider_approve", "+919845099999"])
    with pytest.raises(SystemExit) as exit_, redirect_stderr(err):
        utility.execute()
    assert exit_.value.code == 1
    assert "No account has the phone number +919845099999" in err.getvalue()


@pytest.mark.parametrize(
    ("phone", "message"),
    [("12", "phone"), ("+919845012347", "not as a rider")],
)
def test_a_bad_number_or_a_customer_is_refused(phone, message):
    UserFactory(phone="+919845012347", is_customer=True)

    with pytest.raises(CommandError, match=message):
        approve(phone)
    assert not Rider.objects.exists()


def test_admin_actions_approve_and_withdraw_approval(client):
    # given ops signed in to the admin, an unapproved rider and an online approved one
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    waiting = RiderFactory(approved=False)
    online = RiderFactory(approved=True, status=Rider.Status.ONLINE)
    url = reverse("admin:riders_rider_changelist")

    # when
    approve_response = client.post(
        url, {"action": "approve", "_selected_action": [str(waiting.pk)]}
    )
    withdraw_response = client.post(
        url, {"action": "withdraw_approval", "_selected_action": [str(online.pk)]}
    )

    # then
    assert approve_response.status_code == withdraw_response.status_code == 302
    waiting.refresh_from_db()
    online.refresh_from_db()
    assert waiting.approved is True
    assert (online.approved, online.status) == (False, Rider.Status.OFFLINE)
