"""The ops tests run Celery tasks inline (assigning starts dispatch follow-ups) and start each
test with an empty cache."""

import pytest


@pytest.fixture(autouse=True)
def _inline_tasks_and_clean_cache(celery_inline, clean_cache):
    yield
