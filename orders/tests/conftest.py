from orders.tests.fixtures import (  # noqa: F401
    _inline_tasks_and_clean_cache,
    dispatched,
    service_area,
)
