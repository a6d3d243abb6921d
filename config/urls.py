"""Top-level URLs. API paths follow shared/design/API.md."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.apis import ConfigApi, HealthApi

urlpatterns = [
    path("health/", HealthApi.as_view(), name="health"),
    path("api/config/", ConfigApi.as_view(), name="config"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    path("", include("django_prometheus.urls")),
]

handler400 = "core.exceptions.bad_request"
handler403 = "core.exceptions.permission_denied"
handler404 = "core.exceptions.not_found"
handler500 = "core.exceptions.server_error"
