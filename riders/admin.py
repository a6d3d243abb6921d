from django.contrib import admin, messages

from riders.models import Earning, Rider, RiderLocation
from riders.services import rider_approve, rider_status_set_by_ops


@admin.register(Rider)
class RiderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "vehicle_type", "approved", "status", "last_location_at"]
    list_filter = ["approved", "status", "vehicle_type"]
    search_fields = ["user__phone", "user__name", "vehicle_number"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    readonly_fields = ["last_location_at", "status_changed_at", "created_at", "updated_at"]
    actions = ["approve", "withdraw_approval"]

    def save_model(self, request, obj, form, change):
        if "status" in form.changed_data:  # ops suspending or reinstating a rider
            rider_status_set_by_ops(rider=obj, new_status=obj.status)
        super().save_model(request, obj, form, change)

    @admin.action(description="Approve the selected riders", permissions=["change"])
    def approve(self, request, queryset):
        self._set_approval(request, queryset, approved=True)

    @admin.action(
        description="Withdraw approval (online riders go offline)", permissions=["change"]
    )
    def withdraw_approval(self, request, queryset):
        self._set_approval(request, queryset, approved=False)

    def _set_approval(self, request, queryset, *, approved: bool) -> None:
        changed = 0
        for rider in queryset:
            if rider.approved != approved:
                rider_approve(rider=rider, approved=approved)
                changed += 1
        verb = "approved" if approved else "no longer approved"
        self.message_user(request, f"{changed} rider(s) {verb}.", messages.SUCCESS)


@admin.register(RiderLocation)
class RiderLocationAdmin(admin.ModelAdmin):
    """The trail, for looking into a complaint; written only by the rider app."""

    list_display = ["rider", "recorded_at", "accuracy_m", "speed_mps", "created_at"]
    list_select_related = ["rider__user"]
    search_fields = ["rider__user__phone"]
    raw_id_fields = ["rider"]
    date_hierarchy = "recorded_at"
    show_full_result_count = False  # the table is large; an exact count is a full scan

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Earning)
class EarningAdmin(admin.ModelAdmin):
    """Earnings are written once, by the delivery that earned them; nobody edits them here."""

    list_display = ["rider", "order", "amount_paise", "cash_collected_paise", "created_at"]
    list_select_related = ["rider__user"]
    search_fields = ["rider__user__phone", "order__id"]
    date_hierarchy = "created_at"
    readonly_fields = ["rider", "order", "amount_paise", "cash_collected_paise", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
