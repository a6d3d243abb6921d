"""The proof suite's running stack and the people who use it.

The stack is started once per session and shared by the fuzzing, authorization, hostile-input
and load tests; the fault tests start stacks of their own, since they break them.

Every proof test is marked django_db(transaction=True) here: pytest-django creates the test
database only when a collected test carries a django_db marker (django_db_setup alone does
not), and without it the stack would run on the developer's own database. Transactional, so
the stack's processes see what a test commits; the tables are emptied after each test, and
`_seeded` puts back what every test needs (the ops groups, a service area).
"""

from dataclasses import dataclass
from pathlib import Path

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

PROOF_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        if PROOF_DIR in Path(item.path).parents and not item.get_closest_marker("django_db"):
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture(scope="session")
def stack(django_db_setup, tmp_path_factory) -> Stack:
    stack = start_stack(tmp_path_factory.mktemp("proof-stack"))
    yield stack
    stack.stop()


@pytest.fixture(autouse=True)
def _seeded(transactional_db):
    ensure_ops_groups()
    ServiceAreaFactory()


@pytest.fixture
def db_access(transactional_db):
    """Seeding and reading the stack's database from the test; committed at once."""


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
