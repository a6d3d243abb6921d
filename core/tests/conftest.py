"""Fixtures shared by core's tests: the ASGI handler tests' rider, the Celery tests' tables."""

import pytest
from django.db import connection

from core.tests.celery_tasks import CREATE_TABLES, DROP_TABLES
from riders.tests.factories import RiderFactory, access_token


@pytest.fixture
def rider_headers():
    """The headers of a rider app's JSON request: a real access JWT for a new rider."""
    rider = RiderFactory()
    return {
        "Authorization": f"Bearer {access_token(rider.user)}",
        "Content-Type": "application/json",
    }


@pytest.fixture(scope="module")
def celery_tables(django_db_setup, django_db_blocker):
    """The tables core.tests.celery_tasks writes what a worker really did to."""
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(CREATE_TABLES)
        yield
        with connection.cursor() as cursor:
            cursor.execute(DROP_TABLES)
