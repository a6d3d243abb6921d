"""Password sign-in to the admin (and so the ops console) locks after repeated failures.

django-axes counts the failures in the database: after ADMIN_LOGIN_FAILURE_LIMIT wrong
passwords for one account, even the right password is refused (429) until the lockout ends.
"""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "the staff member's own long password"


@pytest.fixture
def staff():
    user = UserFactory(is_staff=True, is_customer=False)
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return user


def sign_in(client, user, password):
    return client.post(LOGIN, {"username": user.phone, "password": password})


def test_five_wrong_passwords_lock_the_account_even_against_the_right_one(client, staff, settings):
    settings.AXES_FAILURE_LIMIT = 5
    with time_machine.travel(timezone.now(), tick=False) as clock:
        # given five wrong passwords, each from a different address: the fifth locks
        answers = [
            client.post(
                LOGIN,
                {"username": staff.phone, "password": f"guess {attempt}"},
                REMOTE_ADDR=f"198.51.100.{attempt}",
            ).status_code
            for attempt in range(5)
        ]
        assert answers == [200] * 4 + [429]  # the form again with its error, then the lock
        # when the right password follows
        locked = sign_in(client, staff, PASSWORD)

        # then it is refused, and no session was opened
        assert locked.status_code == 429
        assert "_auth_user_id" not in client.session

        # and once the lockout has passed, the right password signs in
        clock.shift(settings.AXES_COOLOFF_TIME + timedelta(seconds=1))
        signed_in = sign_in(client, staff, PASSWORD)
        assert signed_in.status_code == 302, signed_in.content[:300]
        assert client.session["_auth_user_id"] == str(staff.pk)


def test_a_success_before_the_limit_clears_the_count(client, staff, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        sign_in(client, staff, "wrong")
    assert sign_in(client, staff, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        sign_in(client, staff, "wrong")
    assert sign_in(client, staff, PASSWORD).status_code == 302
