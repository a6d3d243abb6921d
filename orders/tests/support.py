"""Helpers for the orders and payments tests: signed-in clients and booking through the API."""

from importlib import import_module

from django.apps import apps
from django.contrib.auth.models import Group
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import UserFactory
from core.permissions import grant
from orders.tests.factories import DROP, PICKUP

QUOTE_URL = "/api/v1/orders/quote/"
ORDERS_URL = "/api/v1/orders/"


def order_url(order_id, action: str = "") -> str:
    return f"{ORDERS_URL}{order_id}/" + (f"{action}/" if action else "")


def client_for(user) -> APIClient:
    """A client sending a real access JWT for `user`, as the apps do."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


# The data migrations that make the ops groups, and the name of each one's grants.
OPS_GROUP_MIGRATIONS = [
    ("orders.migrations.0003_ops_groups", "GROUPS"),
    ("orders.migrations.0005_ops_assign_riders_and_see_earnings", "GRANTS"),
]


def ensure_ops_groups() -> None:
    """The ops groups as the migrations made them.

    The flush after a transactional test empties auth_group (post_migrate brings back only
    content types and permissions), so a test running after one would find no groups.
    """
    for module, name in OPS_GROUP_MIGRATIONS:
        grant(apps, getattr(import_module(module), name))


def ops_user(*groups: str, **fields):
    """A staff member whose rights come only from the named ops groups."""
    ensure_ops_groups()
    user = UserFactory(is_staff=True, is_customer=False, **fields)
    user.groups.set(Group.objects.filter(name__in=groups))
    return user


def quote_body(pickup=None, drop=None, weight_grams=1200, description="Documents") -> dict:
    return {
        "pickup": pickup or PICKUP,
        "drop": drop or DROP,
        "package": {"description": description, "weight_grams": weight_grams},
    }


def book(client, payment_method="cod", key: str | None = None, **quote_changes) -> dict:
    """Quote and book through the API; returns the order body."""
    quote = client.post(QUOTE_URL, quote_body(**quote_changes), format="json")
    assert quote.status_code == 201, quote.content
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = client.post(
        ORDERS_URL,
        {"quote_id": quote.json()["id"], "payment_method": payment_method},
        format="json",
        **headers,
    )
    assert response.status_code == 201, response.content
    return response.json()
