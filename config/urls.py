"""Top-level URLs. API paths follow shared/design/API.md."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.apis import HealthApi
from core.asyncapi import AsyncApiDocsView, AsyncApiSchemaView
from core.metrics import metrics_view
from orders.apis import ConfigApi
from readiness.apis import ReadinessApi

urlpatterns = [
    path("health/", HealthApi.as_view(), name="health"),
    path("api/config/", ConfigApi.as_view(), name="config"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/schema/sockets/", AsyncApiSchemaView.as_view(), name="asyncapi-schema"),
    path("api/docs/sockets/", AsyncApiDocsView.as_view(), name="asyncapi-docs"),
    path("api/v1/auth/", include("accounts.urls")),
    path("api/v1/orders/", include("orders.urls")),
    path("api/v1/payments/", include("payments.urls")),
    path("api/v1/riders/", include("riders.urls")),
    path("api/v1/riders/", include("delivery.rider_urls")),
    path("api/v1/delivery/", include("delivery.urls")),
    path("api/v1/ops/readiness/", ReadinessApi.as_view(), name="ops-readiness"),
    path("admin/", admin.site.urls),
    # The ops console: a staff browser page and its session-authenticated JSON (ops/).
    path("ops/", include("ops.urls")),
    # Usually answered earlier by core.middleware.ProbeMiddleware (any Host, plain HTTP).
    path("metrics", metrics_view, name="prometheus-django-metrics"),
]

handler400 = "core.exceptions.bad_request"
handler403 = "core.exceptions.permission_denied"
handler404 = "core.exceptions.not_found"
handler500 = "core.exceptions.server_error"
