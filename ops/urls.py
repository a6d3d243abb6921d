"""Ops console URLs, mounted at /ops/."""

from django.urls import path

from ops.apis import (
    ConsoleOrderApi,
    ConsoleOrderAssignApi,
    ConsoleOrderUnassignApi,
    ConsoleSnapshotApi,
)
from ops.views import ConsolePageView

app_name = "ops"

urlpatterns = [
    path("", ConsolePageView.as_view(), name="console"),
    path("api/snapshot/", ConsoleSnapshotApi.as_view(), name="snapshot"),
    path("api/orders/<uuid:order_id>/", ConsoleOrderApi.as_view(), name="order"),
    path(
        "api/orders/<uuid:order_id>/assign/", ConsoleOrderAssignApi.as_view(), name="order-assign"
    ),
    path(
        "api/orders/<uuid:order_id>/unassign/",
        ConsoleOrderUnassignApi.as_view(),
        name="order-unassign",
    ),
]
