"""Fixtures shared by the ASGI handler tests (test_hotpath, test_handlers)."""

import pytest

from riders.tests.factories import RiderFactory, access_token


@pytest.fixture
def rider_headers():
    """The headers of a rider app's JSON request: a real access JWT for a new rider."""
    rider = RiderFactory()
    return {
        "Authorization": f"Bearer {access_token(rider.user)}",
        "Content-Type": "application/json",
    }
