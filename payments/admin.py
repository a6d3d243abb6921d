"""Read-only ops screens for payments, refunds and webhook events; refunds start from orders."""

from django.contrib import admin

from orders.admin import ReadOnlyMixin
from payments.models import Payment, Refund, WebhookEvent


@admin.register(Payment)
class PaymentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "razorpay_order_id",
        "order",
        "amount_paise",
        "status",
        "captured_by",
        "created_at",
    ]
    list_filter = ["status", "captured_by"]
    search_fields = ["razorpay_order_id", "razorpay_payment_id", "order__id"]
    readonly_fields = [f.name for f in Payment._meta.fields]


@admin.register(Refund)
class RefundAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["razorpay_payment_id", "amount_paise", "status", "attempts", "created_at"]
    list_filter = ["status"]
    search_fields = ["razorpay_payment_id", "razorpay_refund_id", "idempotency_key"]
    readonly_fields = [f.name for f in Refund._meta.fields]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["event_id", "event_type", "received_at", "processed_at", "outcome"]
    list_filter = ["event_type"]
    search_fields = ["event_id"]
    readonly_fields = [f.name for f in WebhookEvent._meta.fields]
