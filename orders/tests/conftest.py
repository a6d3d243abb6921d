from orders.tests.fixtures import celery_eager, dispatched, empty_cache, service_area  # noqa: F401
