"""Checks of the API and its protection (phase 9)."""

import uuid
from collections.abc import Callable

from django.conf import settings

from readiness.registry import NotHere, Outcome, check, failed, judged, passed
from readiness.runner import Answer, Context

_PROTECTED = {
    "P9.3": ("GET", "accounts:me", {}),
    "P9.4": ("GET", "orders:list-create", {}),
    "P9.5": ("GET", "delivery:tracking", {"order_id": uuid.UUID(int=1)}),
    "P9.6": ("GET", "riders:me", {}),
    "P9.7": ("POST", "payments:razorpay-order", {}),
}


def _anonymous(context: Context, line_id: str) -> Answer:
    from django.urls import reverse

    method, name, kwargs = _PROTECTED[line_id]
    return context.request(method, reverse(name, kwargs=kwargs))


def _protected_route_check(line_id: str) -> Callable[[Context], Outcome]:
    def protected_route(context: Context) -> Outcome:
        answer = _anonymous(context, line_id)
        if (answer.status, answer.error_code()) != (401, "not_authenticated"):
            return failed(f"anonymous {answer.label} answered {answer.status}, not 401")
        return passed(f"{answer.label} is served and refuses anonymous callers (401)")

    return protected_route


protected_route_checks = [
    check(line_id, name=f"protected_route_{line_id}")(_protected_route_check(line_id))
    for line_id in _PROTECTED
]


@check("P9.8", "P10.12")
def authentication_by_default(context: Context) -> Outcome:
    problems = []
    defaults = settings.REST_FRAMEWORK.get("DEFAULT_PERMISSION_CLASSES", [])
    if "rest_framework.permissions.IsAuthenticated" not in defaults:
        problems.append(f"DRF DEFAULT_PERMISSION_CLASSES={defaults}")
    for line_id in _PROTECTED:
        answer = _anonymous(context, line_id)
        if answer.status != 401:
            problems.append(f"anonymous {answer.label} answered {answer.status}")
    return judged(
        problems,
        "IsAuthenticated by default; every API area refuses anonymous callers (public by "
        "design: /health/, /metrics, /api/config/, the schema, OTP login, the signed webhook)",
    )


@check("P10.13")
def jwt(context: Context) -> Outcome:
    from django.urls import reverse

    problems = []
    classes = settings.REST_FRAMEWORK.get("DEFAULT_AUTHENTICATION_CLASSES", [])
    if "rest_framework_simplejwt.authentication.JWTAuthentication" not in classes:
        problems.append("JWTAuthentication is not an authentication class")
    answer = context.request(
        "GET", reverse("accounts:me"), headers={"Authorization": "Bearer not-a-jwt"}
    )
    if (answer.status, answer.error_code()) != (401, "token_not_valid"):
        problems.append(f"a forged token on {answer.label} answered {answer.status}")
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    return judged(
        problems, f"Bearer JWTs, access tokens live {lifetime}; a forged one is refused (401)"
    )


@check("P9.2", "P11.11", "P12.18")
def public_config(context: Context) -> Outcome:
    answer = context.request("GET", "/api/config/")
    body = answer.json()
    if answer.status != 200 or not isinstance(body, dict) or "otp_expiry_seconds" not in body:
        return failed(f"{answer.label} answered {answer.status}, not the bootstrap config")
    return passed(f"{answer.label} answered 200 in {answer.seconds:.2f} s")


@check("P11.9")
def static_files(context: Context) -> Outcome:
    if "://" in settings.STATIC_URL:
        raise NotHere(f"static files are served from another host ({settings.STATIC_URL})")
    path = "/" + settings.STATIC_URL.strip("/") + "/admin/css/base.css"
    answer = context.request("GET", path)
    if answer.status != 200:
        return failed(
            f"{answer.label} answered {answer.status}: static files are not collected into "
            f"STATIC_ROOT ({settings.STATIC_ROOT}), or not served"
        )
    return passed(f"{answer.label} answered 200 (collected, served by WhiteNoise)")
