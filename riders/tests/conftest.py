"""Fixtures for the rider tests."""

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def empty_cache():
    """Sign-in throttle counters live in the cache (Redis) and would leak between runs."""
    cache.clear()
    yield
    cache.clear()
