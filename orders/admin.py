from django.contrib.gis import admin

from orders.models import ServiceArea


@admin.register(ServiceArea)
class ServiceAreaAdmin(admin.GISModelAdmin):
    list_display = ["name", "is_active", "updated_at"]
    list_filter = ["is_active"]
    search_fields = ["name"]
