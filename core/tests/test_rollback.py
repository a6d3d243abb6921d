"""P12.5, the rollback plan, run: the previous release's code serves a database this release
has migrated (docs/deploy.md, "Rolling back"). The schema is never migrated backwards in a
rollback; each release's migrations only add what the release before can live with
(core/tests/test_migration_safety.py)."""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from accounts.tests.factories import UserFactory
from accounts.tests.support import code_from_outbox
from core.tests import releases
from delivery.tests.journey import Api, book_cash_order
from devstack.env import PROJECT_DIR, base_env, database_url
from devstack.web import start_server
from orders.models import Order, OrderStatus, PaymentMethod, PaymentStatus
from orders.tests.factories import DROP, PICKUP, OrderFactory, RiderFactory, ServiceAreaFactory
from payments.models import Payment
from riders.models import Earning

pytestmark = pytest.mark.slow

CUSTOMER = "+919845070101"
RIDER = "+919845070102"


@pytest.mark.checklist("P12.5")
def test_the_previous_release_serves_a_database_this_release_migrated(transactional_db, tmp_path):
    # given the previous release's code, which knows fewer migrations than this one
    previous = releases.export(releases.previous_release(), tmp_path / "previous")
    unknown_to_it = releases.migration_names(PROJECT_DIR) - releases.migration_names(previous)
    assert unknown_to_it, "the previous release has every migration: nothing to roll back over"

    # and the test database, migrated by this release, holding a delivered cash order with the
    # rider's earning, an order paid through Razorpay, and a late cancellation (a column the
    # previous release may not know)
    area = ServiceAreaFactory()
    customer = UserFactory(phone=CUSTOMER)
    rider = RiderFactory(user=UserFactory(phone=RIDER, is_customer=False, is_rider=True))
    delivered = OrderFactory(
        quote__customer=customer, quote__service_area=area, rider=rider,
        status=OrderStatus.DELIVERED,
    )  # fmt: skip
    Earning.objects.create(
        rider=rider, order=delivered, amount_paise=4000,
        cash_collected_paise=delivered.amount_paise,
    )  # fmt: skip
    paid = OrderFactory(
        quote__customer=customer, quote__service_area=area,
        payment_method=PaymentMethod.RAZORPAY, payment_status=PaymentStatus.PAID,
    )  # fmt: skip
    Payment.objects.create(
        order=paid, razorpay_order_id="order_rollback1", razorpay_payment_id="pay_rollback1",
        amount_paise=paid.amount_paise, currency="INR", status=Payment.Status.CAPTURED,
        captured_at=timezone.now(),
    )  # fmt: skip
    late = OrderFactory(
        quote__customer=customer, quote__service_area=area, status=OrderStatus.CANCELLED,
        cancelled_late=True,
    )  # fmt: skip

    # when the previous release is started on it, as a rollback of the code alone does
    env = base_env(
        DJANGO_ENV="development",
        DATABASE_URL=database_url(connections["default"].settings_dict),
        REDIS_URL=os.environ.get("REDIS_URL") or settings.REDIS_URL,
    )
    server = start_server(env, tmp_path / "server", code_dir=previous)
    try:
        assert Path(f"/proc/{server.process.pid}/cwd").resolve() == previous.resolve()

        # then it answers its health check, and the customer signs in and sees every order,
        # the paid one with its payment state and the late cancellation among them
        assert server.get("/health/").status_code == 200
        api = Api(server.base_url, login_code=code_from_outbox, approve_rider=_no_approval)
        customer_headers = api.sign_in(CUSTOMER, "customer")
        listed = server.request("GET", "/api/v1/orders/", headers=customer_headers)
        assert listed.status_code == 200, listed.text
        for order in (delivered, paid, late):
            assert str(order.id) in listed.text, order.status
        detail = server.request("GET", f"/api/v1/orders/{paid.id}/", headers=customer_headers)
        assert detail.status_code == 200, detail.text
        assert detail.json()["payment_status"] == "paid"

        # and books a new order (an insert by code that does not know the newer columns)
        booked = book_cash_order(
            server.request, customer_headers, "rollback-1", pickup=PICKUP, drop=DROP
        )

        # and the rider signs in and sees the earning
        rider_headers = api.sign_in(RIDER, "rider")
        earnings = server.request("GET", "/api/v1/riders/me/earnings/", headers=rider_headers)
        assert earnings.status_code == 200, earnings.text
        assert str(delivered.id) in earnings.text
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-3000:]

    # and this release, rolled forward again, reads what the previous one wrote
    new = Order.objects.get(pk=booked["id"])
    assert (new.status, new.cancelled_late) == (OrderStatus.SEARCHING_RIDER, False)


def _no_approval(phone: str) -> None:
    raise AssertionError(f"{phone}: this test approves no rider through the API")
