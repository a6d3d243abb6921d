"""The ops console page: a staff browser page, signed in through the admin."""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from ops.permissions import assign_allowed, console_allowed


def _tile_source(template: str) -> str:
    """The tile server's origin for the CSP's img-src; Leaflet's {s} becomes a wildcard."""
    parts = urlsplit(template.replace("{s}", "*"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def content_security_policy() -> str:
    """Only this server's scripts, styles and sockets; images from here and the tile server."""
    images = " ".join(filter(None, ["'self'", "data:", _tile_source(settings.MAP_TILE_URL)]))
    return "; ".join(
        [
            "default-src 'self'",
            f"img-src {images}",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ConsolePageView(View):
    """Anonymous: to the admin's sign-in, back here after. Staff without the console's
    permissions (ops.permissions): 403."""

    def get(self, request):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not console_allowed(request.user):
            return TemplateResponse(request, "ops/forbidden.html", status=403)
        context = {
            "tile_url": settings.MAP_TILE_URL,
            "tile_attribution": settings.MAP_TILE_ATTRIBUTION,
            "can_assign": assign_allowed(request.user),
        }
        response = TemplateResponse(request, "ops/console.html", context)
        response["Content-Security-Policy"] = content_security_policy()
        response["Cache-Control"] = "no-store"
        return response
