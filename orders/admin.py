"""Ops screens for service areas, tariffs, quotes and orders.

Orders are read-only here: status changes go through the same services as the API (the
cancel and refund actions), each guarded by a Django permission that the ops groups carry.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.gis import admin as gis_admin
from django.contrib.gis.geos import GEOSException, GEOSGeometry, MultiPolygon, Polygon

from core.exceptions import ApiError
from orders.models import Order, OrderEvent, Quote, Rating, ServiceArea, Tariff
from orders.services import order_cancel
from orders.state import Actor
from payments.models import Payment
from payments.services import order_refund


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
    readonly_fields = fields
    inlines = [OrderEventInline, PaymentInline]
    actions = ["cancel_selected", "refund_selected"]

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
                self.message_user(request, f"{order.pk}: {refusal.message}", messages.WARNING)
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
