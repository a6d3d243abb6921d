"""Helpers for the ops console tests: signed-in browsers, riders and orders on the map."""

from django.test import Client

from accounts.tests.factories import UserFactory
from orders.tests.support import ops_user

CONSOLE_URL = "/ops/"
SNAPSHOT_URL = "/ops/api/snapshot/"


def order_url(order, action: str = "") -> str:
    return f"/ops/api/orders/{order.pk}/" + (f"{action}/" if action else "")


def browser(user=None, *, csrf: bool = False) -> Client:
    """A browser signed in (with the session, as through the admin's sign-in) as `user`."""
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


def dispatcher():
    return ops_user("dispatcher")


def support():
    return ops_user("support")


def finance():
    return ops_user("finance")


def staff_without_group():
    return ops_user()


def customer():
    return UserFactory()


def csrf_token(client: Client) -> str:
    """Loads the console page, which sets the CSRF cookie, and returns the token in it."""
    assert client.get(CONSOLE_URL).status_code == 200
    return client.cookies["csrftoken"].value
