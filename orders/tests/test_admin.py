"""Ops in the admin: rights from groups (not is_staff), an order's events and payments on its
page, the cancel action through the same service, and service areas editable as GeoJSON."""

import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from orders.models import OrderEvent, OrderStatus, ServiceArea
from orders.tests.factories import OrderFactory
from orders.tests.support import ops_user
from payments.models import Payment

pytestmark = pytest.mark.django_db

ORDERS = "/admin/orders/order/"
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[77.0, 12.0], [77.1, 12.0], [77.1, 12.1], [77.0, 12.1], [77.0, 12.0]]],
}


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.checklist("P10.11", configured=True)
def test_the_ops_groups_exist_with_their_permissions():
    perms = {
        group.name: {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        for group in Group.objects.filter(name__in=["dispatcher", "support", "finance"])
    }
    assert "orders.cancel_any_order" in perms["dispatcher"] - perms["finance"]
    assert {"orders.cancel_any_order", "orders.refund_order"} <= perms["support"]
    assert {"orders.change_tariff", "orders.change_servicearea", "orders.refund_order"} <= perms[
        "finance"
    ]
    assert "orders.change_servicearea" not in perms["dispatcher"] | perms["support"]


def test_an_orders_page_shows_its_events_and_payments():
    order = OrderFactory(status=OrderStatus.PAYMENT_PENDING, payment_method="razorpay")
    OrderEvent.objects.create(
        order=order,
        action="request_payment",
        from_status="created",
        to_status="payment_pending",
        actor_kind="system",
    )
    Payment.objects.create(
        order=order, razorpay_order_id="order_shown123", amount_paise=100, currency="INR"
    )

    page = _signed_in(ops_user("support")).get(f"{ORDERS}{order.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "request_payment" in html and "order_shown123" in html
    assert order.delivery_code not in html


@pytest.mark.checklist("P10.11")
def test_cancel_action_needs_the_permission_not_just_is_staff():
    order = OrderFactory(status=OrderStatus.SEARCHING_RIDER)
    action = {"action": "cancel_selected", "_selected_action": [str(order.pk)]}

    # finance sees orders but may not cancel them; a bare staff account may not even look
    _signed_in(ops_user("finance")).post(ORDERS, action)
    assert _signed_in(ops_user()).post(ORDERS, action).status_code == 403
    order.refresh_from_db()
    assert order.status == OrderStatus.SEARCHING_RIDER

    _signed_in(ops_user("dispatcher")).post(ORDERS, action)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert OrderEvent.objects.get(order=order).actor_kind == "staff"


def test_finance_edits_a_service_area_as_geojson_and_dispatchers_cannot(service_area):
    url = f"/admin/orders/servicearea/{service_area.pk}/change/"
    form = {
        "name": service_area.name,
        "is_active": "on",
        "area": "",
        "geojson": json.dumps({"type": "Feature", "geometry": SQUARE}),
        "tariff-TOTAL_FORMS": "0",
        "tariff-INITIAL_FORMS": "0",
    }

    assert _signed_in(ops_user("dispatcher")).post(url, form).status_code == 403
    saved = _signed_in(ops_user("finance")).post(url, form)

    assert saved.status_code == 302, saved.content.decode()[:2000]
    area = ServiceArea.objects.get(pk=service_area.pk).area
    assert area.geom_type == "MultiPolygon"
    assert area.extent == (77.0, 12.0, 77.1, 12.1)


def test_broken_geojson_is_a_form_error_and_changes_nothing(service_area):
    url = f"/admin/orders/servicearea/{service_area.pk}/change/"
    before = service_area.area.wkt
    form = {
        "name": service_area.name,
        "area": "",
        "geojson": '{"type": "Point", "coordinates": [77, 12]}',
        "tariff-TOTAL_FORMS": "0",
        "tariff-INITIAL_FORMS": "0",
    }

    page = _signed_in(ops_user("finance")).post(url, form)

    assert page.status_code == 200
    assert "Polygon or MultiPolygon" in page.content.decode()
    assert ServiceArea.objects.get(pk=service_area.pk).area.wkt == before
