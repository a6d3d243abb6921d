"""ASGI entry point: HTTP goes to Django, WebSockets to the Channels consumers."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django must be set up before anything imports models (the consumers do): the first half of
# django.core.asgi.get_asgi_application(). The second half, the handler, is ours (below).
django.setup(set_prefix=False)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import reverse  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from core.handlers import SyncChainASGIHandler  # noqa: E402
from core.hotpath import HotPathHandler  # noqa: E402
from delivery.auth import (  # noqa: E402
    AuthMiddlewareStack,
    JwtAuthMiddleware,
    socket_origin_validator,
)

# Every HTTP request but the hot paths: Django's handler, with the middleware chain and the
# view in one thread hop (core.handlers).
django_asgi_app = SyncChainASGIHandler()

application = ProtocolTypeRouter(
    {
        # The rider's location ping skips Django's per-request thread (core.hotpath).
        "http": HotPathHandler(paths=[reverse("riders:location")], fallback=django_asgi_app),
        # Origin check first (CORS_ALLOWED_ORIGINS and ALLOWED_HOSTS; native apps send no
        # Origin and pass), then the ?token= JWT, then the admin session for staff browsers.
        "websocket": socket_origin_validator(
            JwtAuthMiddleware(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
