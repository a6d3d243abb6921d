from orders.tests.fixtures import (  # noqa: F401
    _inline_tasks_and_clean_cache,
    dispatched,
    service_area,
)
from payments.tests.fake_razorpay import razorpay  # noqa: F401
