from django.apps import AppConfig


class ReadinessConfig(AppConfig):
    """The live readiness report (`manage.py readiness`, GET /api/v1/ops/readiness/)."""

    name = "readiness"
    verbose_name = "Readiness report"
