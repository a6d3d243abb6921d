"""The proof suite's running stack and the people who use it.

The stack is started once per session and shared by the fuzzing, authorization, hostile-input
and load tests; the fault tests start stacks of their own, since they break them.

Every proof test is marked django_db(transaction=True) here: pytest-django creates the test
database only when a collected test carries a django_db marker (django_db_setup alone does
not), and without it the stack would run on the developer's own database. Transactional, so
the stack's processes see what a test commits; the tables are emptied after each test, and
`_seeded` puts back what every test needs (the ops groups, a service area).
"""

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management.base import CommandError
from django.db import OperationalError, connection
from django.test import TransactionTestCase

from accounts.models import User
from accounts.tests.factories import UserFactory
from devstack.stack import Stack, start_stack
from orders.models import Order
from orders.tests.factories import OrderFactory, ServiceAreaFactory
from orders.tests.support import ensure_ops_groups
from riders.models import Rider
from riders.tests.factories import RiderFactory, access_token

PROOF_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        if PROOF_DIR in Path(item.path).parents and not item.get_closest_marker("django_db"):
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture(scope="session", autouse=True)
def _flush_retries_deadlocks():
    """After each test the tables are emptied (TRUNCATE) while the stack's own processes may
    still be querying them (beat's 10 s sweep, a task a test queued); PostgreSQL can then pick
    the TRUNCATE as a deadlock victim. It is tried again, a few times, on any error of the
    database's own (not on a bug in the SQL)."""
    original = TransactionTestCase._fixture_teardown

    def teardown(self):
        for attempt in range(1, 6):
            try:
                return original(self)
            except (CommandError, OperationalError) as error:
                # `flush` wraps the database's error in a CommandError
                cause = error.__cause__ if isinstance(error, CommandError) else error
                if not isinstance(cause, OperationalError) or attempt == 5:
                    raise
                print(f"flush retried ({attempt}): {cause}")
                time.sleep(0.5 * attempt)

    TransactionTestCase._fixture_teardown = teardown
    yield
    TransactionTestCase._fixture_teardown = original


# The web apps allowed to call the shared stack's API (CORS), and so to open its sockets.
WEB_APP_ORIGINS = ("https://app.example.com", "https://shop.example.com:8443")


@pytest.fixture(scope="session")
def stack(django_db_setup, tmp_path_factory) -> Stack:
    """The stack the fuzzing, hostile-input and authorization tests share. Its workers are
    not recycled (GUNICORN_MAX_REQUESTS): a recycle drops sockets and refuses handshakes for a
    moment, which the load test measures on a stack with the production default."""
    stack = start_stack(
        tmp_path_factory.mktemp("proof-stack"),
        GUNICORN_MAX_REQUESTS="1000000",
        CORS_ALLOWED_ORIGINS=",".join(WEB_APP_ORIGINS),
    )
    yield stack
    stack.stop()


def assert_on_test_database(stack: Stack | None = None) -> None:
    """Never seed, read or serve the developer's own database."""
    settings = connection.settings_dict
    name, test_name = settings["NAME"], settings["TEST"]["NAME"]
    assert (name == test_name) if test_name else name.startswith("test_"), f"{name}: not a test db"
    if stack is not None:
        assert stack.env["DATABASE_URL"].endswith(f"/{name}"), "the stack serves another database"


@pytest.fixture(autouse=True)
def _seeded(transactional_db):
    assert_on_test_database()
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
