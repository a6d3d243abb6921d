"""Reads for orders and service areas."""

from django.db.models import QuerySet

from orders.models import ServiceArea


def service_area_list_active() -> QuerySet[ServiceArea]:
    return ServiceArea.objects.filter(is_active=True).order_by("name")
