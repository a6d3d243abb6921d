"""The riders' and the customers' WebSocket routes, mounted by config/routing.py."""

from django.urls import path

from delivery.consumers import DeliveryConsumer, RiderConsumer

websocket_urlpatterns = [
    path("ws/rider/", RiderConsumer.as_asgi()),
    path("ws/delivery/<uuid:order_id>/", DeliveryConsumer.as_asgi()),
]
