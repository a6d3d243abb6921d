"""The proof suite's running stack and the people who use it.

The stack is started once per session and shared by the fuzzing, authorization and
hostile-input tests; the fault tests start stacks of their own, since they break them. These
tests use no pytest-django database marker: the service's own processes write the database,
and the test process reads and seeds it through `django_db_blocker.unblock()`. pytest-django
runs them after every database test, so nothing they leave behind reaches another test.
"""

from dataclasses import dataclass

import pytest
from django.apps import apps

from accounts.models import User
from accounts.tests.factories import UserFactory
from orders.models import Order
from orders.tests.factories import OrderFactory, ServiceAreaFactory
from orders.tests.support import ensure_ops_groups
from proof.stack import Stack, start_stack
from riders.models import Rider
from riders.tests.factories import RiderFactory, access_token


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, tmp_path_factory) -> Stack:
    with django_db_blocker.unblock():
        ensure_ops_groups()
        ServiceAreaFactory()
    stack = start_stack(tmp_path_factory.mktemp("proof-stack"))
    yield stack
    stack.stop()


@pytest.fixture
def db_access(django_db_blocker):
    """Seeding and reading the stack's database from the test (no transaction around it)."""
    with django_db_blocker.unblock():
        yield


@dataclass
class Person:
    user: User
    token: str
    rider: Rider | None = None

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


def customer() -> Person:
    user = UserFactory()
    return Person(user, access_token(user))


def rider(status: str = Rider.Status.ONLINE) -> Person:
    profile = RiderFactory(status=status)
    return Person(profile.user, access_token(profile.user), profile)


def staff(*groups: str) -> Person:
    ensure_ops_groups()
    user = UserFactory(is_staff=True, is_customer=False)
    user.groups.set(apps.get_model("auth", "Group").objects.filter(name__in=groups))
    return Person(user, access_token(user))


def order_for(
    owner: Person, status: str = "searching_rider", carrier: Person | None = None, **fields
) -> Order:
    """An order of `owner` in `status`; a carrying one is `carrier`'s when given."""
    if carrier is not None:
        fields["rider"] = carrier.rider
    return OrderFactory(status=status, quote__customer=owner.user, **fields)
