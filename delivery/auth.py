"""WebSocket sign-in: the access JWT the apps pass as `?token=<access JWT>`.

Browsers and mobile WebSocket clients cannot set an Authorization header, hence the query
string; config.logs masks it in every log line, and nothing here logs it.
"""

import functools
import logging
from urllib.parse import parse_qs, urlparse

from channels.auth import AuthMiddleware, UserLazyObject
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication

from core.db import database_call

logger = logging.getLogger(__name__)


def _user_for_token_sync(raw_token: str):
    """The active user the access token names, or AnonymousUser for any flaw in it."""
    authentication = JWTAuthentication()
    try:
        return authentication.get_user(authentication.get_validated_token(raw_token.encode()))
    except AuthenticationFailed as error:  # simplejwt's InvalidToken is one too
        logger.info("WebSocket token refused: %s", error.get_codes())
        return AnonymousUser()


_user_for_token = database_call(_user_for_token_sync)


class JwtAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from `?token=`; goes outside AuthMiddlewareStack.

    A connection with a token gets that token's user, or AnonymousUser when the token is bad
    (never the session's user: a bad credential must fail). Without a token the scope is left
    for AuthMiddlewareStack, which finds a staff member's admin session in a browser and
    AnonymousUser for everyone else. SessionAuthMiddleware keeps a user already in the scope.
    """

    async def __call__(self, scope, receive, send):
        tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if tokens:
            scope = {**scope, "user": await _user_for_token(tokens[-1])}
        return await super().__call__(scope, receive, send)


class SessionAuthMiddleware(AuthMiddleware):
    """channels' AuthMiddleware for the sockets the token did not sign in (staff browsers).

    channels' own looks up the session's user for every socket, even one whose user
    JwtAuthMiddleware has set, and does it through a thread-sensitive database_sync_to_async:
    every app's handshake then queued in the one thread asgiref keeps per process for such
    calls. A user already in the scope is kept as it is, without that lookup.
    """

    async def resolve_scope(self, scope):
        if isinstance(scope["user"], UserLazyObject):
            await super().resolve_scope(scope)


def AuthMiddlewareStack(inner):  # channels' name, for the same three layers
    """channels.auth.AuthMiddlewareStack, with SessionAuthMiddleware as its AuthMiddleware."""
    return CookieMiddleware(SessionMiddleware(SessionAuthMiddleware(inner)))


class SocketOriginValidator(OriginValidator):
    """Who may open a socket, by the handshake's Origin: the same rule as the HTTP API's CORS.

    Browsers always send Origin, and the check stops another site's page from opening a socket
    with a visitor's cookies. Allowed: an origin listed in CORS_ALLOWED_ORIGINS (exact scheme,
    host and port: the web apps allowed to call the API may follow orders live too), and an
    origin on one of the service's own hosts (ALLOWED_HOSTS, as channels'
    AllowedHostsOriginValidator: the ops console). Native apps (OkHttp, URLSession) send no
    Origin and carry their JWT in ?token=, which a foreign page cannot know: they pass. Anything
    else, `null` included, is refused with 403 at the handshake.
    """

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin) or _origin_key(parsed_origin) in _cors_origins(
            tuple(settings.CORS_ALLOWED_ORIGINS)
        )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(parsed) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) with the default port made explicit; None for no host."""
    try:
        port = parsed.port
    except ValueError:
        return None
    if not parsed.hostname:
        return None
    scheme = parsed.scheme.lower()
    return scheme, parsed.hostname.lower(), port or _DEFAULT_PORTS.get(scheme)


@functools.cache
def _cors_origins(origins: tuple[str, ...]) -> frozenset:
    return frozenset(filter(None, (_origin_key(urlparse(origin)) for origin in origins)))


def socket_origin_validator(application):
    """SocketOriginValidator with ALLOWED_HOSTS as channels' AllowedHostsOriginValidator reads
    them."""
    hosts = AllowedHostsOriginValidator(application).allowed_origins
    return SocketOriginValidator(application, hosts)
