"""Reads for orders and service areas. User-facing code loads orders only through these gates."""

from django.contrib.gis.geos import Point
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet

from accounts.models import User
from core.exceptions import ApiError
from orders.errors import OrderError
from orders.models import Order, PaymentMethod, ServiceArea


def service_area_list_active() -> QuerySet[ServiceArea]:
    return ServiceArea.objects.filter(is_active=True).order_by("name")


def service_areas_for_trip(pickup: Point, drop: Point) -> QuerySet[ServiceArea]:
    """Active areas covering the pickup or the drop, in one statement, each with `covers_pickup`
    and `covers_drop` (ST_Covers: the border counts as inside) and its tariff; the polygon
    itself is not loaded."""

    def covers(point: Point) -> ExpressionWrapper:
        return ExpressionWrapper(Q(area__covers=point), output_field=BooleanField())

    return (
        service_area_list_active()
        .filter(Q(area__covers=pickup) | Q(area__covers=drop))
        .annotate(covers_pickup=covers(pickup), covers_drop=covers(drop))
        .select_related("tariff")
        .defer("area")
    )


def user_sees_all_orders(user: User) -> bool:
    """Ops with the view permission (through a group such as support) see every order."""
    return user.is_staff and user.has_perm("orders.view_order")


def _orders() -> QuerySet[Order]:
    return Order.objects.select_related("quote", "rider__user")


def order_list_for_user(*, user: User) -> QuerySet[Order]:
    orders = _orders().order_by("-created_at", "-id")
    return orders if user_sees_all_orders(user) else orders.filter(customer=user)


def order_get_for_user(*, user: User, order_id) -> Order:
    """The order if `user` may see it (its customer, or ops); otherwise 404, never 403."""
    order = order_list_for_user(user=user).filter(pk=order_id).first()
    if order is None:
        raise ApiError(OrderError.NOT_FOUND)
    return order


def order_get_for_customer(*, customer: User, order_id) -> Order:
    """Only the customer's own order: for what only the customer may do (pay, rate)."""
    order = _orders().filter(pk=order_id, customer=customer).first()
    if order is None:
        raise ApiError(OrderError.NOT_FOUND)
    return order


def order_delivery_code_for_user(*, order: Order, user: User) -> str | None:
    """The plain delivery code, for the order's customer only and while the order is live."""
    if order.customer_id != user.pk or not order.delivery_code:
        return None
    return order.delivery_code


def place(point, address: str) -> dict:
    """A stored point and its address as the API shows it."""
    return {"lat": point.y, "lng": point.x, "address": address}


def cash_to_collect_paise(order: Order) -> int:
    """What the rider collects at the door: the whole amount on cash on delivery, else 0."""
    return order.amount_paise if order.payment_method == PaymentMethod.COD else 0
