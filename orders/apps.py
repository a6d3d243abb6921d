from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self):
        from core.metrics import ORDER_TRANSITIONS
        from orders.models import OrderStatus

        ORDER_TRANSITIONS.declare(OrderStatus.values)  # each exported from 0
