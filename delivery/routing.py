"""WebSocket routes, mounted by config/asgi.py."""

from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from delivery.consumers import DeliveryConsumer, OpsConsumer, RiderConsumer

websocket_urlpatterns = [
    path("ws/rider/", RiderConsumer.as_asgi()),
    path("ws/delivery/<uuid:order_id>/", DeliveryConsumer.as_asgi()),
    path("ws/ops/", OpsConsumer.as_asgi()),
    # Any other path is refused at the handshake (403) instead of failing in the router (500).
    re_path(r"", WebsocketDenier.as_asgi()),
]
