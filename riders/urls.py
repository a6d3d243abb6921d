"""Rider URLs, mounted at /api/v1/riders/."""

from django.urls import path

from riders.apis import (
    RiderEarningsApi,
    RiderLocationApi,
    RiderMeApi,
    RiderOfflineApi,
    RiderOnlineApi,
)

app_name = "riders"

urlpatterns = [
    path("me/", RiderMeApi.as_view(), name="me"),
    path("me/online/", RiderOnlineApi.as_view(), name="online"),
    path("me/offline/", RiderOfflineApi.as_view(), name="offline"),
    path("me/location/", RiderLocationApi.as_view(), name="location"),
    path("me/earnings/", RiderEarningsApi.as_view(), name="earnings"),
]
