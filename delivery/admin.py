"""The dispatch log in the admin: read-only. Ops assign and unassign riders from the order's
page (ops.admin), through delivery.services."""

from django.contrib import admin

from delivery.models import DispatchRound, Offer


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    list_display = [
        "order",
        "rider",
        "round_number",
        "status",
        "withdrawn_reason",
        "distance_m",
        "created_at",
    ]
    list_filter = ["status", "withdrawn_reason"]
    list_select_related = ["order", "rider__user"]
    search_fields = ["order__id", "rider__user__phone"]
    date_hierarchy = "created_at"


@admin.register(DispatchRound)
class DispatchRoundAdmin(ReadOnlyAdmin):
    list_display = ["order", "number", "radius_m", "offers_made", "created_at"]
    list_select_related = ["order"]
    search_fields = ["order__id"]
