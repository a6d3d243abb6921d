from django.contrib import admin

from riders.models import Rider


@admin.register(Rider)
class RiderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "vehicle_type", "approved", "status", "last_location_at"]
    list_filter = ["approved", "status", "vehicle_type"]
    search_fields = ["user__phone", "user__name", "vehicle_number"]
    raw_id_fields = ["user"]
    readonly_fields = ["last_location_at", "created_at", "updated_at"]
