"""Checks of WebSockets (phases 3, 9, 11, 12)."""

import uuid

from django.conf import settings

from readiness.registry import Outcome, check, failed, judged, passed
from readiness.runner import Context
from readiness.shared import FOREIGN_ORIGIN

_NO_SUCH_ORDER = str(uuid.UUID(int=1))


@check("P9.9", "P11.12", "P12.19")
def websocket_handshake(context: Context) -> Outcome:
    kind, code = context.socket("/ws/rider/")
    if kind == "refused":
        return failed(f"the /ws/rider/ handshake was refused with HTTP {code}")
    return passed("a WebSocket to /ws/rider/ is upgraded and reaches its consumer (ASGI/Channels)")


@check("P3.18", "P9.12")
def websocket_auth(context: Context) -> Outcome:
    outcome = context.socket("/ws/rider/")
    if outcome != ("closed", 4401):
        return failed(f"an anonymous /ws/rider/ socket ended as {outcome}, not closed 4401")
    return passed("an anonymous socket is closed with 4401: the auth middleware runs")


@check("P3.16", "P9.10", "P9.5")
def websocket_routes(context: Context) -> Outcome:
    problems = []
    tracking = context.socket(f"/ws/delivery/{_NO_SUCH_ORDER}/")
    if tracking != ("closed", 4401):
        problems.append(f"/ws/delivery/<id>/ ended as {tracking}, not its consumer's 4401")
    unknown = context.socket("/ws/readiness-no-such-socket/")
    if unknown != ("refused", 403):
        problems.append(f"an unknown socket path ended as {unknown}, not refused (403)")
    return judged(problems, "/ws/rider/ and /ws/delivery/<id>/ routed; other paths refused")


@check("P3.17")
def websocket_origin(context: Context) -> Outcome:
    problems = []
    outcome = context.socket("/ws/rider/", origin=FOREIGN_ORIGIN)
    if outcome != ("refused", 403):
        problems.append(f"a socket from {FOREIGN_ORIGIN} ended as {outcome}, not refused (403)")
    # The web apps allowed to call the API (CORS) may open the sockets too.
    web_apps = [origin for origin in settings.CORS_ALLOWED_ORIGINS if origin != "*"]
    if web_apps:
        outcome = context.socket("/ws/rider/", origin=web_apps[0])
        if outcome != ("closed", 4401):
            problems.append(
                f"a socket from the CORS origin {web_apps[0]} ended as {outcome}, not passed on "
                "to the token check (4401)"
            )
    return judged(
        problems,
        f"a socket from a foreign Origin ({FOREIGN_ORIGIN}) is refused (403); one from a "
        "CORS origin reaches the token check",
    )


@check("P9.11")
def channel_layer(context: Context) -> Outcome:
    layer = settings.CHANNEL_LAYERS["default"]
    if not layer["BACKEND"].startswith("channels_redis."):
        return failed(f"channel layer {layer['BACKEND']}: sockets on other workers are unreachable")
    hosts = layer.get("CONFIG", {}).get("hosts") or [{}]
    limit = hosts[0].get("max_connections") if isinstance(hosts[0], dict) else None
    kind = layer["BACKEND"].rsplit(".", 1)[-1]
    return passed(f"{kind} over Redis, a pool of up to {limit or 'the default'} connections")
