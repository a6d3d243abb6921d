"""ASGI entry point: HTTP goes to Django, WebSockets to the Channels consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import reverse  # noqa: E402

from core.hotpath import HotPathHandler  # noqa: E402
from delivery.auth import (  # noqa: E402
    AuthMiddlewareStack,
    JwtAuthMiddleware,
    allowed_hosts_origin_validator,
)
from delivery.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The rider's location ping skips Django's per-request thread (core.hotpath).
        "http": HotPathHandler(paths=[reverse("riders:location")], fallback=django_asgi_app),
        # Origin check first (ALLOWED_HOSTS; native apps send no Origin and pass), then the
        # ?token= JWT, then the admin session for staff browsers.
        "websocket": allowed_hosts_origin_validator(
            JwtAuthMiddleware(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
