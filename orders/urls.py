"""Order URLs, mounted at /api/v1/orders/."""

from django.urls import path

from orders.apis import (
    OrderCancelApi,
    OrderDetailApi,
    OrderListCreateApi,
    OrderRatingApi,
    QuoteCreateApi,
)

app_name = "orders"

urlpatterns = [
    path("", OrderListCreateApi.as_view(), name="list-create"),
    path("quote/", QuoteCreateApi.as_view(), name="quote"),
    path("<uuid:order_id>/", OrderDetailApi.as_view(), name="detail"),
    path("<uuid:order_id>/cancel/", OrderCancelApi.as_view(), name="cancel"),
    path("<uuid:order_id>/rating/", OrderRatingApi.as_view(), name="rating"),
]
