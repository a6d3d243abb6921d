"""The delivery tests run Celery tasks inline and start each test with an empty cache; the
Razorpay fake is there for dispatch giving up on a paid order."""

import pytest

from payments.tests.fake_razorpay import razorpay  # noqa: F401


@pytest.fixture(autouse=True)
def _inline_tasks_and_clean_cache(celery_inline, clean_cache):
    yield
