"""Ops screens for service areas, tariffs, quotes and orders.

Orders are read-only here: status changes go through the same services as the API (cancel,
refund, assign and unassign a rider, new delivery-code tries), each guarded by a Django
permission that the ops groups carry.
"""

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.gis import admin as gis_admin
from django.contrib.gis.geos import GEOSException, GEOSGeometry, MultiPolygon, Polygon
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from core.exceptions import ApiError
from delivery.selectors import riders_assignable_near
from delivery.services import (
    delivery_code_attempts_reset,
    order_assign_by_staff,
    order_unassign_by_staff,
)
from orders.models import Order, OrderEvent, OrderStatus, Quote, Rating, ServiceArea, Tariff
from orders.services import order_cancel
from orders.state import Actor
from payments.models import Payment
from payments.services import order_refund
from riders.models import Rider


def _geometry_from_geojson(text: str) -> MultiPolygon:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise forms.ValidationError(f"Not JSON: {error}") from None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features") or []
        if len(features) != 1:
            raise forms.ValidationError("Paste a FeatureCollection with exactly one feature.")
        data = features[0]
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = data.get("geometry")
    if not isinstance(data, dict) or data.get("type") not in {"Polygon", "MultiPolygon"}:
        raise forms.ValidationError("Paste a GeoJSON Polygon or MultiPolygon (lng, lat).")
    try:
        geometry = GEOSGeometry(json.dumps(data), srid=4326)
    except (GEOSException, ValueError) as error:
        raise forms.ValidationError(f"Not a valid geometry: {error}") from None
    if isinstance(geometry, Polygon):
        geometry = MultiPolygon(geometry, srid=4326)
    if not geometry.valid:
        raise forms.ValidationError(f"The outline is not valid: {geometry.valid_reason}")
    return geometry


class ServiceAreaForm(forms.ModelForm):
    geojson = forms.CharField(
        label="GeoJSON",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        help_text="Optional: paste a GeoJSON Polygon or MultiPolygon (or a Feature holding one) "
        "to replace the area. Use this when the map cannot load: the map needs the internet "
        "(OpenLayers and its OpenStreetMap tiles come from the web).",
    )

    class Meta:
        model = ServiceArea
        fields = ["name", "area", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["area"].required = False

    def clean(self):
        cleaned = super().clean()
        text = (cleaned.get("geojson") or "").strip()
        if text:
            try:
                cleaned["area"] = _geometry_from_geojson(text)
            except forms.ValidationError as error:
                self.add_error("geojson", error)
        elif not cleaned.get("area"):
            self.add_error("area", "Draw the area on the map or paste it as GeoJSON.")
        return cleaned

    def _post_clean(self):
        if self.cleaned_data.get("area") is not None:
            self.instance.area = self.cleaned_data["area"]
        super()._post_clean()


class TariffInline(admin.StackedInline):
    model = Tariff
    extra = 0
    max_num = 1
    can_delete = True
    verbose_name_plural = "Tariff (empty: the PRICING_* defaults apply)"


@admin.register(ServiceArea)
class ServiceAreaAdmin(gis_admin.GISModelAdmin):
    form = ServiceAreaForm
    list_display = ["name", "is_active", "updated_at"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    fields = ["name", "is_active", "area", "geojson"]
    inlines = [TariffInline]


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
    list_filter = ["status", "payment_status", "payment_method"]
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


@admin.register(Quote)
class QuoteAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["id", "customer", "service_area", "distance_m", "total_paise", "expires_at"]
    list_select_related = ["customer", "service_area"]
    search_fields = ["id", "customer__phone"]
    exclude = ["pickup_location", "drop_location"]
    readonly_fields = [
        "id",
        "customer",
        "service_area",
        "pickup_address",
        "drop_address",
        "package_description",
        "package_weight_grams",
        "distance_m",
        "currency",
        "total_paise",
        "breakdown",
        "expires_at",
    ]


@admin.register(Rating)
class RatingAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["order", "stars", "created_at"]
    list_filter = ["stars"]
    readonly_fields = ["order", "stars", "comment", "created_at"]
