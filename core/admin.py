"""Admin for Celery dead letters: find them, read them, send them again."""

from django.contrib import admin, messages
from django.db import DatabaseError
from kombu.exceptions import OperationalError as BrokerError

from core.models import DeadLetter
from core.services import DeadLetterNotOpen, dead_letter_resolve, dead_letter_retry


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "task_name",
        "status",
        "exception_type",
        "retries",
        "queue",
        "request_id",
        "retried_at",
    ]
    list_filter = ["status", "task_name", "queue", "created_at"]
    search_fields = ["task_name", "task_id", "request_id", "exception_message"]
    date_hierarchy = "created_at"
    actions = ["retry_selected", "resolve_selected"]
    readonly_fields = [field.name for field in DeadLetter._meta.fields]
    list_per_page = 50

    def has_add_permission(self, request):
        return False  # rows come from failed tasks only

    @admin.action(description="Retry selected tasks", permissions=["change"])
    def retry_selected(self, request, queryset):
        sent, skipped, failed = 0, 0, 0
        for letter_id in queryset.values_list("pk", flat=True):
            try:
                dead_letter_retry(dead_letter_id=letter_id)
                sent += 1
            except DeadLetterNotOpen:
                skipped += 1
            except (BrokerError, DatabaseError, OSError):
                failed += 1
        if sent:
            self.message_user(request, f"Sent {sent} task(s) again.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} not open (already retried or resolved).", messages.INFO
            )
        if failed:
            self.message_user(
                request, f"{failed} could not be sent (broker unreachable?).", messages.ERROR
            )

    @admin.action(description="Mark selected as resolved", permissions=["change"])
    def resolve_selected(self, request, queryset):
        for letter_id in queryset.values_list("pk", flat=True):
            dead_letter_resolve(dead_letter_id=letter_id)
        self.message_user(request, "Marked resolved.", messages.SUCCESS)
