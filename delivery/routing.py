"""WebSocket routes (filled by the delivery-tracking work)."""

websocket_urlpatterns: list = []
