"""The order's admin page: read-only, with actions that go through the same services as the
API (cancel, refund, assign and unassign a rider, new delivery-code tries), each guarded by a
Django permission that the ops groups carry. It lives here, in the top layer, because its
actions reach delivery, payments and riders; the rest of orders' admin is in orders/admin.py.
"""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from core.exceptions import ApiError
from delivery.selectors import riders_assignable_near
from delivery.services.staff_actions import (
    delivery_code_attempts_reset,
    order_assign_by_staff,
    order_unassign_by_staff,
)
from orders.admin import ReadOnlyMixin
from orders.models import Order, OrderEvent, OrderStatus
from orders.services import order_cancel
from orders.state import Actor
from payments.models import Payment
from payments.services.refunds import order_refund
from riders.models import Rider


class OrderEventInline(ReadOnlyMixin, admin.TabularInline):
    model = OrderEvent
    extra = 0
    fields = ["created_at", "action", "from_status", "to_status", "actor_kind", "actor", "reason"]
    readonly_fields = fields
    ordering = ["created_at", "id"]


class PaymentInline(ReadOnlyMixin, admin.TabularInline):
    model = Payment
    extra = 0
    fields = [
        "razorpay_order_id",
        "razorpay_payment_id",
        "amount_paise",
        "currency",
        "status",
        "captured_by",
        "captured_at",
        "last_error",
    ]
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "customer",
        "status",
        "payment_method",
        "payment_status",
        "amount_paise",
        "created_at",
    ]
    list_filter = ["status", "payment_status", "payment_method", "cancelled_late"]
    search_fields = ["id", "customer__phone"]
    date_hierarchy = "created_at"
    list_select_related = ["customer"]
    # delivery_code stays out: it is the customer's, read only through their own app.
    fields = [
        "id",
        "customer",
        "quote",
        "rider",
        "status",
        "payment_method",
        "payment_status",
        "amount_paise",
        "currency",
        "notes",
        "cancelled_late",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [*fields, "assign_link"]
    inlines = [OrderEventInline, PaymentInline]
    actions = [
        "cancel_selected",
        "refund_selected",
        "unassign_selected",
        "reset_delivery_code_tries",
    ]

    def get_fields(self, request, obj=None):
        fields = list(self.fields)
        if self.has_assign_permission(request):
            fields.insert(fields.index("rider") + 1, "assign_link")
        return fields

    @admin.display(description="Assign by hand")
    def assign_link(self, order):
        if order.status != OrderStatus.SEARCHING_RIDER:
            return "Only an order searching for a rider can be assigned."
        url = reverse("admin:orders_order_assign", args=[order.pk])
        return format_html('<a class="button" href="{}">Assign a rider</a>', url)

    def get_urls(self):
        assign = path(
            "<uuid:order_id>/assign/",
            self.admin_site.admin_view(self.assign_view),
            name="orders_order_assign",
        )
        return [assign, *super().get_urls()]

    def assign_view(self, request, order_id):
        """Ops pick a rider for a searching order; the same service as the API's accept."""
        if not self.has_assign_permission(request):
            raise PermissionDenied
        order = get_object_or_404(Order.objects.select_related("quote"), pk=order_id)
        form = AssignRiderForm(request.POST or None, order=order)
        if request.method == "POST" and form.is_valid():
            try:
                order_assign_by_staff(
                    order_id=order.pk, rider_id=form.cleaned_data["rider"].pk, staff=request.user
                )
            except ApiError as refusal:
                self.message_user(request, refusal.message, messages.ERROR)
            else:
                rider = form.cleaned_data["rider"]
                self.message_user(request, f"Assigned to {rider}.", messages.SUCCESS)
                return redirect("admin:orders_order_change", order.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "order": order,
            "form": form,
            "title": f"Assign a rider to {order}",
            "radius_km": settings.DISPATCH_MAX_RADIUS_M / 1000,
        }
        return TemplateResponse(request, "admin/orders/order/assign.html", context)

    def has_assign_permission(self, request):
        return request.user.has_perm("orders.assign_rider")

    def has_cancel_any_permission(self, request):
        return request.user.has_perm("orders.cancel_any_order")

    def has_refund_permission(self, request):
        return request.user.has_perm("orders.refund_order")

    def _run(self, request, queryset, service, done: str):
        succeeded = 0
        for order in queryset:
            try:
                service(order)
                succeeded += 1
            except ApiError as refusal:
                self.message_user(request, f"Order {order.pk}: {refusal.message}", messages.WARNING)
        if succeeded:
            self.message_user(request, f"{succeeded} order(s) {done}.", messages.SUCCESS)

    @admin.action(description="Cancel selected orders", permissions=["cancel_any"])
    def cancel_selected(self, request, queryset):
        self._run(
            request,
            queryset,
            lambda order: order_cancel(
                order_id=order.pk,
                actor=Actor.staff(request.user),
                reason=f"Cancelled in the admin by {request.user.phone}",
            ),
            "cancelled",
        )

    @admin.action(description="Refund selected orders' payments", permissions=["refund"])
    def refund_selected(self, request, queryset):
        self._run(
            request,
            queryset,
            lambda order: order_refund(
                order_id=order.pk,
                user=request.user,
                reason=f"Refunded in the admin by {request.user.phone}",
            ),
            "refund requested",
        )

    @admin.action(
        description="Unassign the rider (the order searches again)", permissions=["assign"]
    )
    def unassign_selected(self, request, queryset):
        self._run(
            request,
            queryset,
            lambda order: order_unassign_by_staff(order_id=order.pk, staff=request.user),
            "unassigned",
        )

    @admin.action(description="Allow new delivery-code tries", permissions=["assign"])
    def reset_delivery_code_tries(self, request, queryset):
        self._run(
            request,
            queryset,
            lambda order: delivery_code_attempts_reset(order_id=order.pk, staff=request.user),
            "given new delivery-code tries",
        )


class RiderChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, rider):
        seen = timesince(rider.last_location_at) if rider.last_location_at else "never"
        return f"{rider} - {rider.distance.km:.1f} km from the pickup, seen {seen} ago"


class AssignRiderForm(forms.Form):
    rider = RiderChoiceField(queryset=Rider.objects.none())

    def __init__(self, *args, order: Order, **kwargs):
        super().__init__(*args, **kwargs)
        # The same riders the ops console offers (delivery.selectors).
        self.fields["rider"].queryset = riders_assignable_near(
            point=order.quote.pickup_location, customer_id=order.customer_id
        )
