"""Ops screens for service areas, tariffs, quotes and ratings. The order's page, whose actions
reach delivery, payments and riders, is in ops/admin.py."""

import json

from django import forms
from django.contrib import admin
from django.contrib.gis import admin as gis_admin
from django.contrib.gis.geos import GEOSException, GEOSGeometry, MultiPolygon, Polygon

from orders.models import Quote, Rating, ServiceArea, Tariff


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
