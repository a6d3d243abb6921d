"""The rider's offers, mounted at /api/v1/riders/ beside riders.urls: the paths the rider app
knows, served by delivery, which owns offers."""

from django.urls import path

from delivery.apis import RiderOfferAcceptApi, RiderOfferDeclineApi, RiderOffersApi

app_name = "offers"

urlpatterns = [
    path("me/offers/", RiderOffersApi.as_view(), name="offers"),
    path("offers/<uuid:offer_id>/accept/", RiderOfferAcceptApi.as_view(), name="offer-accept"),
    path("offers/<uuid:offer_id>/decline/", RiderOfferDeclineApi.as_view(), name="offer-decline"),
]
