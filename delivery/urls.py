"""Delivery URLs, mounted at /api/v1/delivery/."""

from django.urls import path

from delivery.apis import (
    ArrivedDropApi,
    ArrivedPickupApi,
    DeliverApi,
    DeliveryTrackingApi,
    FailApi,
    PickedUpApi,
)

app_name = "delivery"

urlpatterns = [
    path("<uuid:order_id>/", DeliveryTrackingApi.as_view(), name="tracking"),
    path("<uuid:order_id>/arrived-pickup/", ArrivedPickupApi.as_view(), name="arrived-pickup"),
    path("<uuid:order_id>/picked-up/", PickedUpApi.as_view(), name="picked-up"),
    path("<uuid:order_id>/arrived-drop/", ArrivedDropApi.as_view(), name="arrived-drop"),
    path("<uuid:order_id>/deliver/", DeliverApi.as_view(), name="deliver"),
    path("<uuid:order_id>/fail/", FailApi.as_view(), name="fail"),
]
