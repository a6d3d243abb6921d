"""Checks of the server's own answers: HTTPS, headers, cookies (phases 1 and 10)."""

import uuid
from http.cookies import Morsel

from django.conf import settings

from readiness.registry import Outcome, Unreachable, check, failed, judged, passed
from readiness.runner import Answer, Context

ONE_YEAR = 31536000


def _https_pages(context: Context) -> list[Answer]:
    """An API page and a Django page (the admin login), through the TLS proxy."""
    if not context.sees_https:
        raise Unreachable(
            "the URL is plain http and SECURE_PROXY_SSL_HEADER is unset, so no answer is an "
            "HTTPS one: pass --url https://…"
        )
    from django.urls import reverse

    return [context.request("GET", "/api/config/"), context.request("GET", reverse("admin:login"))]


@check("P1.8", "P10.7")
def ssl_redirect(context: Context) -> Outcome:
    if not settings.SECURE_SSL_REDIRECT:
        return failed("SECURE_SSL_REDIRECT is off: plain HTTP is served, not redirected")
    if context.parts.scheme == "https":
        return passed("SECURE_SSL_REDIRECT is on (the URL is https: no plain request sent)")
    answer = context.request("GET", "/api/config/", https=False)
    location = answer.header("Location") or ""
    if answer.status not in {301, 308} or not location.startswith("https://"):
        return failed(f"plain HTTP {answer.label} answered {answer.status}, not a redirect")
    return passed(f"SECURE_SSL_REDIRECT is on; plain HTTP answered {answer.status} to https://")


@check("P1.9", "P10.8")
def hsts(context: Context) -> Outcome:
    problems = []
    if settings.SECURE_HSTS_SECONDS != ONE_YEAR:
        problems.append(f"SECURE_HSTS_SECONDS={settings.SECURE_HSTS_SECONDS}, not {ONE_YEAR}")
    for answer in _https_pages(context):
        value = answer.header("Strict-Transport-Security")
        if not value:
            problems.append(f"{answer.label}: no Strict-Transport-Security header")
        elif f"max-age={ONE_YEAR}" not in value:
            problems.append(f"{answer.label}: Strict-Transport-Security: {value}")
    return judged(problems, f"Strict-Transport-Security: max-age={ONE_YEAR} on HTTPS answers")


@check("P1.14", "P10.6")
def frame_options(context: Context) -> Outcome:
    problems = []
    if settings.X_FRAME_OPTIONS != "DENY":
        problems.append(f"X_FRAME_OPTIONS={settings.X_FRAME_OPTIONS}")
    for answer in _https_pages(context):
        value = answer.header("X-Frame-Options")
        if value != "DENY":
            problems.append(f"{answer.label}: X-Frame-Options is {value or 'missing'}")
    return judged(problems, "X-Frame-Options: DENY on the API and the admin")


@check("P1.15", "P10.5")
def xss_protection(context: Context) -> Outcome:
    problems = []
    if not settings.SECURE_BROWSER_XSS_FILTER:
        problems.append("SECURE_BROWSER_XSS_FILTER is off")
    if not settings.SECURE_CONTENT_TYPE_NOSNIFF:
        problems.append("SECURE_CONTENT_TYPE_NOSNIFF is off")
    for answer in _https_pages(context):
        if answer.header("X-Content-Type-Options") != "nosniff":
            problems.append(f"{answer.label}: no X-Content-Type-Options: nosniff")
    return judged(
        problems,
        "SECURE_BROWSER_XSS_FILTER set (Django 4+ sends no X-XSS-Protection; browsers dropped "
        "it) and X-Content-Type-Options: nosniff on every answer",
    )


def _csrf_cookie(context: Context) -> Morsel:
    """The csrftoken cookie the admin login page sets, through the TLS proxy."""
    answer = _https_pages(context)[1]
    cookie = answer.cookie(settings.CSRF_COOKIE_NAME)
    if cookie is None:
        raise Unreachable(f"{answer.label} ({answer.status}) set no {settings.CSRF_COOKIE_NAME}")
    return cookie


_SESSION_NOTE = "the session cookie is set only at sign-in; its flags are these settings"


@check("P1.10", "P10.9")
def cookies_secure(context: Context) -> Outcome:
    problems = []
    for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        if not getattr(settings, name):
            problems.append(f"{name} is off")
    if not _csrf_cookie(context)["secure"]:
        problems.append(f"{settings.CSRF_COOKIE_NAME} was set without Secure")
    return judged(problems, f"both settings on; {settings.CSRF_COOKIE_NAME} set with Secure")


@check("P1.11", "P10.10")
def session_cookie_httponly(context: Context) -> Outcome:
    if not settings.SESSION_COOKIE_HTTPONLY:
        return failed("SESSION_COOKIE_HTTPONLY is off")
    return passed(f"SESSION_COOKIE_HTTPONLY is on ({_SESSION_NOTE})")


@check("P1.12", "P10.10")
def csrf_cookie_httponly(context: Context) -> Outcome:
    problems = [] if settings.CSRF_COOKIE_HTTPONLY else ["CSRF_COOKIE_HTTPONLY is off"]
    if not _csrf_cookie(context)["httponly"]:
        problems.append(f"{settings.CSRF_COOKIE_NAME} was set without HttpOnly")
    return judged(problems, f"CSRF_COOKIE_HTTPONLY on; {settings.CSRF_COOKIE_NAME} is HttpOnly")


@check("P1.13")
def session_cookie_samesite(context: Context) -> Outcome:
    problems = []
    if settings.SESSION_COOKIE_SAMESITE != "Lax":
        problems.append(f"SESSION_COOKIE_SAMESITE={settings.SESSION_COOKIE_SAMESITE}")
    samesite = _csrf_cookie(context)["samesite"]
    if samesite.lower() not in {"lax", "strict"}:
        problems.append(f"{settings.CSRF_COOKIE_NAME} SameSite={samesite or 'unset'}")
    return judged(problems, f"SESSION_COOKIE_SAMESITE=Lax ({_SESSION_NOTE}); csrftoken is Lax")


@check("P10.4")
def csrf_protection(context: Context) -> Outcome:
    problems = []
    if "django.middleware.csrf.CsrfViewMiddleware" not in settings.MIDDLEWARE:
        problems.append("CsrfViewMiddleware is not in MIDDLEWARE")
    answer = context.request("POST", _https_pages(context)[1].path)
    if answer.status != 403:
        problems.append(f"{answer.label} without a CSRF token answered {answer.status}, not 403")
    return judged(problems, f"{answer.label} without a CSRF token is refused (403)")


@check("P10.18")
def errors_leak_nothing(context: Context) -> Outcome:
    answer = context.request("GET", f"/readiness-no-such-page-{uuid.uuid4().hex[:8]}/")
    problems = []
    if answer.status != 404 or answer.error_code() != "not_found":
        problems.append(f"an unknown page answered {answer.status}, not the JSON 404")
    leaked = [m for m in ("Traceback", "URLconf", "settings.py", "DEBUG") if m in answer.text]
    if leaked:
        problems.append(f"the 404 page shows {', '.join(leaked)}")
    return judged(problems, 'an unknown page answers the JSON 404 {"error": {"code": ...}}')
