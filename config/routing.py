"""Every WebSocket route, mounted by config/asgi.py."""

from channels.security.websocket import WebsocketDenier
from django.urls import re_path

from delivery.routing import websocket_urlpatterns as delivery_routes
from ops.routing import websocket_urlpatterns as ops_routes

websocket_urlpatterns = [
    *delivery_routes,
    *ops_routes,
    # Any other path is refused at the handshake (403) instead of failing in the router (500).
    re_path(r"", WebsocketDenier.as_asgi()),
]
