"""Settings for every environment, read from the environment in this one place.

`DJANGO_ENV` picks the mode: `development` (default), `test` or `production`.
Production refuses to start on a missing or unsafe value and names every problem at once.
Every variable read here is documented in `.env.example`.
"""

import ipaddress
import logging
import os
import re
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from config import redis_probe

BASE_DIR = Path(__file__).resolve().parent.parent

# A `.env` file (made by `make run` / `make test` from `.env.example`) fills in what the real
# environment does not set; the real environment always wins. Tests point this elsewhere.
_env_file = os.environ.get("DJANGO_ENV_FILE", str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    environ.Env.read_env(_env_file, overwrite=False)

env = environ.Env()

DJANGO_ENV = env.str("DJANGO_ENV", default="development").strip().lower()
if DJANGO_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(
        f"DJANGO_ENV must be development, test or production, not {DJANGO_ENV!r}."
    )
IS_PRODUCTION = DJANGO_ENV == "production"
IS_TEST = DJANGO_ENV == "test" or "pytest" in sys.modules

# Problems found in a production environment; reported together at the end of this module.
_problems: list[str] = []
# Warnings for the startup log (logging is not configured yet while settings load).
STARTUP_WARNINGS: list[str] = []


def _env_list(name: str, default: list[str]) -> list[str]:
    return [item.strip() for item in env.list(name, default=default) if item.strip()]


# --- Core ---------------------------------------------------------------------------------

DEBUG = env.bool("DEBUG", default=not IS_PRODUCTION and not IS_TEST)
if IS_PRODUCTION and DEBUG:
    _problems.append("DEBUG must be false in production (DEBUG=false).")

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if IS_PRODUCTION:
    if not SECRET_KEY:
        _problems.append("DJANGO_SECRET_KEY is not set.")
    elif (
        len(SECRET_KEY) < 50
        or len(set(SECRET_KEY)) < 5
        or SECRET_KEY.startswith("django-insecure")
        or SECRET_KEY.lower() in {"changeme", "secret", "change-me"}
    ):
        _problems.append(
            "DJANGO_SECRET_KEY is weak: use at least 50 random characters, e.g. "
            '`python -c "import secrets; print(secrets.token_urlsafe(50))"`.'
        )
elif not SECRET_KEY:
    # Never a hard-coded key: outside production a missing key is random per process.
    # `make run` writes a stable one into .env so sessions and tokens survive restarts.
    SECRET_KEY = secrets.token_urlsafe(50)

ALLOWED_HOSTS = _env_list(
    "ALLOWED_HOSTS",
    default=[] if IS_PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"],
)
if IS_PRODUCTION:
    if not ALLOWED_HOSTS:
        _problems.append("ALLOWED_HOSTS is empty: list the host names this service answers.")
    elif "*" in ALLOWED_HOSTS:
        _problems.append("ALLOWED_HOSTS must not contain '*': list the host names explicitly.")

CORS_ALLOWED_ORIGINS = _env_list("CORS_ALLOWED_ORIGINS", default=[])
if IS_PRODUCTION:
    if not CORS_ALLOWED_ORIGINS:
        _problems.append(
            "CORS_ALLOWED_ORIGINS is empty: list the web origins allowed to call the API."
        )
    elif "*" in CORS_ALLOWED_ORIGINS:
        _problems.append("CORS_ALLOWED_ORIGINS must not contain '*': list the origins explicitly.")
_bad_origins = [
    origin
    for origin in CORS_ALLOWED_ORIGINS
    if origin != "*"
    and (urlsplit(origin).scheme not in {"http", "https"} or not urlsplit(origin).netloc)
]
if _bad_origins:
    _problems.append(
        "CORS_ALLOWED_ORIGINS entries must look like https://app.example.com: "
        + ", ".join(_bad_origins)
    )
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.gis",
    "corsheaders",
    "django_guid",
    "django_prometheus",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "core",
    "accounts",
    "orders",
    "riders",
    "delivery",
    "payments",
    "ops",
    "readiness",
    "axes",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "core.middleware.request_id_middleware",  # django-guid's, keeping safe client ids
    "core.middleware.ApiErrorShapeMiddleware",  # /api/ answers JSON with DEBUG on, too
    # Before anything that validates the Host header or redirects to HTTPS: load balancers
    # and Prometheus call /health/ and /metrics over plain HTTP with an IP address as Host.
    "core.middleware.ProbeMiddleware",
    "core.middleware.DependencyErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Answers a locked-out admin sign-in (django-axes); last, as its documentation says.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# The rider's location ping (core.hotpath) runs this part of the chain, in the event loop: a
# bearer-token JSON POST has no use for sessions, CSRF, the session user, messages or static
# files. Whatever is added to MIDDLEWARE runs there too unless it is named here; it must do no
# I/O (core/tests/test_hotpath.py pins the list).
_NOT_ON_THE_HOT_PATH = {
    "core.middleware.ProbeMiddleware",  # /health/ and /metrics only
    "core.middleware.ApiErrorShapeMiddleware",  # the ping's view answers JSON by itself
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "axes.middleware.AxesMiddleware",  # sign-in pages only
}
HOT_PATH_MIDDLEWARE = [path for path in MIDDLEWARE if path not in _NOT_ON_THE_HOT_PATH]

# GDAL before 3.9 (Debian 12 ships 3.6) cannot block file and network access while parsing
# spatial reference text. We never hand client-supplied SRS or WKT to GDAL: positions are
# built from validated floats, and only staff edit geometries in the admin.
SILENCED_SYSTEM_CHECKS = ["gis.W001"]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
AUTH_USER_MODEL = "accounts.User"
# Password sign-in (the admin, and so the ops console) is locked for ADMIN_LOGIN_LOCKOUT_MINUTES
# once an account, from any address, or an address, on any accounts, has had
# ADMIN_LOGIN_FAILURE_LIMIT wrong passwords (django-axes; attempts in the database, the client
# address as uvicorn resolved it; `manage.py axes_reset_username <phone>` lifts a lock).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one reaching the limit locks
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_FORM_FIELD = "username"  # the admin form's field (it holds the phone)
AXES_VERBOSE = False
if AXES_FAILURE_LIMIT <= 0 or AXES_COOLOFF_TIME.total_seconds() <= 0:
    _problems.append("ADMIN_LOGIN_FAILURE_LIMIT and ADMIN_LOGIN_LOCKOUT_MINUTES must be positive.")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-in"
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Kolkata")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Outside production the app serves static files straight from the apps, no collectstatic.
WHITENOISE_USE_FINDERS = not IS_PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security (checklist phase 1) -----------------------------------------------------------

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG and IS_PRODUCTION)
# Railway, ECS behind an ALB and most ingresses terminate TLS and say so in this header.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^metrics$"]
SECURE_HSTS_SECONDS = 31536000 if IS_PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Kept for the checklist; Django 4+ no longer sends X-XSS-Protection (browsers dropped the
# auditor). XSS is handled by escaping templates, JSON-only API responses and nosniff.
SECURE_BROWSER_XSS_FILTER = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = IS_PRODUCTION
CSRF_COOKIE_SECURE = IS_PRODUCTION
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# --- Database (checklist phases 1 and 4) ------------------------------------------------------

_POSTGIS_ENGINE = "django.contrib.gis.db.backends.postgis"
_DB_SCHEMES = {"postgres", "postgresql", "postgis", "pgsql"}
_DEFAULT_DEV_DATABASE_URL = "postgis://delivery:delivery@127.0.0.1:5432/delivery"


def _database_from_env() -> dict:
    url = env.str("DATABASE_URL", default="").strip()
    postgres_vars = {
        key: env.str(key, default="")
        for key in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_HOST")
    }
    if not url and postgres_vars["POSTGRES_DB"] and postgres_vars["POSTGRES_HOST"]:
        return {
            "ENGINE": _POSTGIS_ENGINE,
            "NAME": postgres_vars["POSTGRES_DB"],
            "USER": postgres_vars["POSTGRES_USER"],
            "PASSWORD": postgres_vars["POSTGRES_PASSWORD"],
            "HOST": postgres_vars["POSTGRES_HOST"],
            "PORT": env.str("POSTGRES_PORT", default="5432"),
        }
    if not url:
        if IS_PRODUCTION:
            _problems.append(
                "No database configured: set DATABASE_URL, or POSTGRES_DB, POSTGRES_USER, "
                "POSTGRES_PASSWORD and POSTGRES_HOST."
            )
            return {"ENGINE": _POSTGIS_ENGINE, "NAME": ""}
        url = _DEFAULT_DEV_DATABASE_URL
    parts = urlsplit(url)
    if parts.scheme not in _DB_SCHEMES or not parts.hostname or not parts.path.strip("/"):
        _problems.append(
            "DATABASE_URL must look like postgres://user:password@host:5432/dbname "
            f"(got scheme {parts.scheme!r}, host {parts.hostname!r})."
        )
        return {"ENGINE": _POSTGIS_ENGINE, "NAME": ""}
    config = environ.Env.db_url_config(url.replace(f"{parts.scheme}://", "postgres://", 1))
    # Railway and RDS hand out postgres:// URLs; GeoDjango needs its PostGIS engine.
    config["ENGINE"] = _POSTGIS_ENGINE
    return config


_database = _database_from_env()
# Under ASGI every request runs in a fresh thread context, so Django's persistent connections
# (CONN_MAX_AGE) are never reused; psycopg's pool is. Figures and the choice: README.md.
DB_POOL = env.bool("DB_POOL", default=True)
_db_options = {
    "connect_timeout": env.int("DB_CONNECT_TIMEOUT", default=5),
    # Kills a runaway query instead of letting it hold a worker and a connection.
    "options": f"-c statement_timeout={env.int('DB_STATEMENT_TIMEOUT_MS', default=30000)}",
}
if DB_POOL:
    _db_options["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        # How long a request waits for a free connection before failing with a 503.
        "timeout": env.float("DB_POOL_TIMEOUT", default=5.0),
    }
_database.update(
    {
        "CONN_MAX_AGE": 0 if DB_POOL else env.int("CONN_MAX_AGE", default=600),
        "CONN_HEALTH_CHECKS": not DB_POOL,
        "OPTIONS": {**_database.get("OPTIONS", {}), **_db_options},
    }
)
# Lets two test runs share one PostgreSQL server without dropping each other's database.
_database["TEST"] = {"NAME": env.str("DJANGO_TEST_DB_NAME", default="") or None}
DATABASES = {"default": _database}

# `manage.py backup` (docs/deploy.md#backups): where the dumps go and how many are kept. Read
# by that command alone, so a wrong value fails the backup, never the web's start.
BACKUP_TARGET = env.str("BACKUP_TARGET", default="")
BACKUP_KEEP_COUNT = env.int("BACKUP_KEEP_COUNT", default=14)
BACKUP_KEEP_DAYS = env.int("BACKUP_KEEP_DAYS", default=0)
BACKUP_S3_ENDPOINT_URL = env.str("BACKUP_S3_ENDPOINT_URL", default="")

# --- Redis: cache, channel layer, Celery broker (checklist phase 1) ---------------------------

_DEFAULT_DEV_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_URL = env.str("REDIS_URL", default="" if IS_PRODUCTION else _DEFAULT_DEV_REDIS_URL)
if IS_PRODUCTION and not REDIS_URL:
    _problems.append("REDIS_URL is not set (e.g. redis://redis.internal:6379/0).")
elif REDIS_URL and urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    _problems.append("REDIS_URL must start with redis://, rediss:// or unix://.")
    REDIS_URL = ""
elif urlsplit(REDIS_URL).scheme == "rediss" and "ssl_cert_reqs=" not in urlsplit(REDIS_URL).query:
    # Celery's Redis result backend refuses a TLS URL that does not say how to verify the
    # server's certificate, at the first task; say so at start-up instead.
    _problems.append(
        "REDIS_URL uses TLS (rediss://) but does not say how to verify the server: add "
        "?ssl_cert_reqs=required (docs/deploy.md)."
    )
    REDIS_URL = ""
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=5.0)
REDIS_HEALTH_CHECK_INTERVAL = 60

# Validated once at start-up. An unreachable Redis falls back to in-process replacements so
# the API keeps serving; in development Celery also runs tasks inline.
REDIS_AVAILABLE = bool(REDIS_URL) and not _problems and redis_probe.ping(REDIS_URL)
REDIS_FALLBACK = bool(REDIS_URL) and not REDIS_AVAILABLE
if REDIS_FALLBACK:
    STARTUP_WARNINGS.append(
        f"Redis is unreachable at {redis_probe.redact(REDIS_URL)}: using an in-memory cache"
        + (
            ", the in-memory channel layer and eager Celery (tasks run inline)."
            if not IS_PRODUCTION
            else "; the broker and channel layer keep retrying Redis."
        )
    )

# Production keeps pointing at Redis (it recovers by itself); development without Redis
# swaps in in-process replacements for the cache, the channel layer and the broker.
USE_REDIS = bool(REDIS_URL) and not (REDIS_FALLBACK and not IS_PRODUCTION)

if USE_REDIS:
    _cache_backend = {
        # django-redis, stepping aside to an in-process cache for a few seconds whenever Redis
        # fails, so a dead or hanging Redis costs one timeout per window, not one per request.
        "BACKEND": "core.cache.RedisCacheWithMemoryFallback",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "CONNECTION_POOL_KWARGS": {
                "retry_on_timeout": True,
                "health_check_interval": REDIS_HEALTH_CHECK_INTERVAL,
            },
            "FALLBACK_SECONDS": env.float("REDIS_FALLBACK_SECONDS", default=10.0),
            "START_IN_FALLBACK": REDIS_FALLBACK,
        },
        "KEY_PREFIX": "delivery",
    }
else:
    _cache_backend = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
CACHES = {"default": _cache_backend}

# The channel layer: channels-redis over Redis pub/sub. A group send is one PUBLISH, however
# many sockets listen, and each process relays it to its own sockets; channels-redis's list-based
# layer (channels_redis.core) paid a Redis script per listening socket and a receive loop per
# process that fell behind at 200 pings a second with 1,000 orders watched (ping -> customer p99
# 4.3 s against 0.5 s; docs/performance.md). Messages are not queued: one sent while a process
# is cut off from Redis is lost, as with the core layer when Redis is down; clients re-read the
# REST snapshot when the `seq` jumps. redis-py's PubSub subscribes again after reconnecting.
# Connections one process's channel layer may hold at once: redis-py's asyncio pool refuses the
# next one ("Too many connections") rather than waiting.
CHANNEL_LAYER_MAX_CONNECTIONS = env.int("CHANNEL_LAYER_MAX_CONNECTIONS", default=1000)
if CHANNEL_LAYER_MAX_CONNECTIONS <= 0:
    _problems.append("CHANNEL_LAYER_MAX_CONNECTIONS must be positive.")
if USE_REDIS:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": CHANNEL_LAYER_MAX_CONNECTIONS,
                        # The listener polls with its own 0.1 s timeout; this bounds a publish
                        # to a Redis that hangs.
                        "socket_timeout": REDIS_SOCKET_TIMEOUT,
                        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
                    }
                ],
                "prefix": "delivery:asgi",
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery (the rest of its configuration lives in config/celery.py) -------------------------

CELERY_BROKER_URL = REDIS_URL if USE_REDIS else "memory://"
CELERY_RESULT_BACKEND = REDIS_URL if USE_REDIS else "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not USE_REDIS)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = TIME_ZONE
IS_PRIMARY = env.bool("IS_PRIMARY", default=False)
# Beat sends its heartbeat task this often; /health/ (and the BeatHeartbeatStale alert) calls
# the heartbeat stale after BEAT_HEARTBEAT_MAX_AGE_SECONDS.
BEAT_HEARTBEAT_INTERVAL_SECONDS = env.int("BEAT_HEARTBEAT_INTERVAL_SECONDS", default=60)
BEAT_HEARTBEAT_MAX_AGE_SECONDS = env.int("BEAT_HEARTBEAT_MAX_AGE_SECONDS", default=180)
if not 0 < BEAT_HEARTBEAT_INTERVAL_SECONDS < BEAT_HEARTBEAT_MAX_AGE_SECONDS:
    _problems.append(
        "BEAT_HEARTBEAT_INTERVAL_SECONDS must be positive and below BEAT_HEARTBEAT_MAX_AGE_SECONDS."
    )
# Times a worker tries the broker before it gives up and exits (2, 4, 6 ... s apart, at most
# 30 s; 10 tries take about 110 s), at start-up and after a lost connection.
CELERY_BROKER_CONNECTION_MAX_RETRIES = env.int("CELERY_BROKER_CONNECTION_MAX_RETRIES", default=10)
if CELERY_BROKER_CONNECTION_MAX_RETRIES <= 0:
    _problems.append("CELERY_BROKER_CONNECTION_MAX_RETRIES must be positive.")
# Seconds Redis waits for a late-acked task's ack before handing it to another worker; 0 means
# the hard time limit + 10 minutes (config/celery.py, which refuses a shorter one in production).
BROKER_VISIBILITY_TIMEOUT_SECONDS = env.int("CELERY_VISIBILITY_TIMEOUT", default=0)
# A worker sends itself a canary task this often and is called stalled when one has waited this
# long with a pool process free (core/worker_liveness.py); its state files live in this folder,
# which `manage.py worker_alive` (the worker's liveness probe) reads.
WORKER_CANARY_INTERVAL_SECONDS = env.float("WORKER_CANARY_INTERVAL_SECONDS", default=10.0)
WORKER_STALL_SECONDS = env.float("WORKER_STALL_SECONDS", default=60.0)
# Local to the worker's container, where the probe runs; not shared with anything else.
WORKER_LIVENESS_DIR = env.str("WORKER_LIVENESS_DIR", default="/tmp/delivery-worker-liveness")  # noqa: S108
if not 0 < 2 * WORKER_CANARY_INTERVAL_SECONDS <= WORKER_STALL_SECONDS:
    _problems.append(
        "WORKER_STALL_SECONDS must be at least twice WORKER_CANARY_INTERVAL_SECONDS (> 0): a "
        "canary lost with a Redis restart is sent again before the worker is called stalled."
    )
# Online riders silent for this long are set offline by a periodic task (riders/tasks.py).
RIDER_IDLE_OFFLINE_MINUTES = env.int("RIDER_IDLE_OFFLINE_MINUTES", default=10)
if RIDER_IDLE_OFFLINE_MINUTES <= 0 or BROKER_VISIBILITY_TIMEOUT_SECONDS < 0:
    _problems.append("RIDER_IDLE_OFFLINE_MINUTES must be positive, CELERY_VISIBILITY_TIMEOUT >= 0.")

# --- API ----------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # The apps send `Authorization: Bearer <access JWT>`; sessions serve staff in a browser.
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's, refusing JSON nested past the recursion limit with a 400 instead of a 500.
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    # Names the components of nested Input/OutputSerializers after their API class.
    "DEFAULT_SCHEMA_CLASS": "core.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Hyperlocal delivery API",
    "DESCRIPTION": "Phone OTP login, quotes and orders, Razorpay, riders and live tracking. "
    "Money is always integer paise (INR).",
    "VERSION": "1.1.0",
    # One module of a generated client per tag (core.openapi.OPERATIONS names each operation).
    "TAGS": [
        {"name": "auth", "description": "Phone OTP sign-in, tokens and the caller's account."},
        {"name": "orders", "description": "Quotes, booking, the caller's orders, cancel, rating."},
        {"name": "payments", "description": "Razorpay checkout for online-paid orders."},
        {"name": "riders", "description": "The rider app: profile, shifts, location, offers."},
        {"name": "delivery", "description": "Following an order, and the rider's steps on it."},
        {"name": "ops", "description": "Staff tools."},
        {"name": "service", "description": "Health and the apps' start-up configuration."},
    ],
    # Enums a generated client shares between models, under names that stay put.
    "ENUM_NAME_OVERRIDES": {
        "OrderStatus": "orders.models.OrderStatus",
        "PaymentStatus": "orders.models.PaymentStatus",
        "PaymentMethod": "orders.models.PaymentMethod",
        "OfferStatus": "delivery.models.Offer.Status",
        "RiderStatus": "riders.models.Rider.Status",
        "VehicleType": "riders.models.Rider.VehicleType",
        "Role": "accounts.services.LoginRole",
    },
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Public like /health/ and /api/config/: no credential is read, so an app or a browser
    # holding an expired token still gets the schema and the docs instead of a 401.
    "SERVE_AUTHENTICATION": [],
    # Docs assets come from drf-spectacular-sidecar: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Request ids (X-Request-ID), carried into Celery tasks ----------------------------------

from django_guid.integrations import CeleryIntegration  # noqa: E402

DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Request-ID",
    # core.middleware.request_id_middleware has already dropped an id of unsafe characters, so
    # the rest (an ALB trace id, nginx's $request_id, a client's own) are kept as sent.
    "VALIDATE_GUID": False,
    "RETURN_HEADER": True,
    "EXPOSE_HEADER": True,
    "INTEGRATIONS": [CeleryIntegration(use_django_logging=True, log_parent=True)],
}

# --- Product settings ---------------------------------------------------------------------


def _rupees_to_paise(name: str, default: str) -> int:
    raw = env.str(name, default=default)
    try:
        paise = round(float(raw) * 100)
    except ValueError:
        paise = -1
    if paise <= 0:
        _problems.append(f"{name} must be a positive amount in rupees, e.g. 50 (got {raw!r}).")
        return round(float(default) * 100)
    return paise


CURRENCY = "INR"
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="IN")
OTP_LENGTH = 6
OTP_EXPIRY_SECONDS = env.int("OTP_EXPIRY_SECONDS", default=300)
RIDER_FIXED_PAY_PER_ORDER_PAISE = _rupees_to_paise("RIDER_FIXED_PAY_PER_ORDER", "50")
# Unfinished orders one customer may have at once (429 too_many_live_orders past it; the
# answer's Retry-After is ORDER_LIVE_RETRY_AFTER_SECONDS). Shown to apps in /api/config/.
ORDER_MAX_LIVE_PER_CUSTOMER = env.int("ORDER_MAX_LIVE_PER_CUSTOMER", default=3)
ORDER_LIVE_RETRY_AFTER_SECONDS = 60
# Shortest trip quoted, in metres (400 trip_too_short below it).
ORDER_MIN_DISTANCE_M = env.int("ORDER_MIN_DISTANCE_M", default=200)
if ORDER_MAX_LIVE_PER_CUSTOMER <= 0:
    _problems.append("ORDER_MAX_LIVE_PER_CUSTOMER must be positive.")
PRICING_BASE_FARE_PAISE = env.int("PRICING_BASE_FARE_PAISE", default=3000)
PRICING_PER_KM_PAISE = env.int("PRICING_PER_KM_PAISE", default=1000)
SMS_PROVIDER = env.str("SMS_PROVIDER", default="dummy")
RAZORPAY_KEY_ID = env.str("RAZORPAY_KEY_ID", default="")
RAZORPAY_KEY_SECRET = env.str("RAZORPAY_KEY_SECRET", default="")
RAZORPAY_WEBHOOK_SECRET = env.str("RAZORPAY_WEBHOOK_SECRET", default="")
PAYMENTS_ENABLED = bool(RAZORPAY_KEY_ID and RAZORPAY_KEY_SECRET)
WEBSOCKET_PATH = "/ws/"
# Where the apps open the sockets when the `sockets` role has a host of its own (Railway, or
# `make run`'s second port): its ws:// or wss:// origin, sent in /api/config/. Empty: on the
# API's own host, where a proxy sends /ws/ to the sockets role (ECS, Kubernetes, HAProxy).
SOCKETS_URL = env.str("SOCKETS_URL", default="").strip().rstrip("/")
if SOCKETS_URL and not re.fullmatch(r"wss?://[^/?#\s]+", SOCKETS_URL):
    _problems.append(
        f"SOCKETS_URL must be a ws:// or wss:// origin such as wss://sockets.example.com "
        f"(no path), not {SOCKETS_URL!r}."
    )
HEALTH_CHECK_TIMEOUT_SECONDS = env.float("HEALTH_CHECK_TIMEOUT_SECONDS", default=3.0)
DEMO_STAFF_PASSWORD = env.str("DEMO_STAFF_PASSWORD", default="")

# --- Orders and payments ---------------------------------------------------------------------

# Defaults for service areas without a tariff of their own; finance edits tariffs in the admin.
PRICING_MIN_FARE_PAISE = env.int("PRICING_MIN_FARE_PAISE", default=4000)
PRICING_FREE_WEIGHT_GRAMS = env.int("PRICING_FREE_WEIGHT_GRAMS", default=5000)
PRICING_PER_EXTRA_KG_PAISE = env.int("PRICING_PER_EXTRA_KG_PAISE", default=500)
# Heaviest package a two-wheeler takes; heavier ones are refused at the quote.
ORDER_MAX_WEIGHT_GRAMS = env.int("ORDER_MAX_WEIGHT_GRAMS", default=20000)
QUOTE_TTL_SECONDS = env.int("QUOTE_TTL_SECONDS", default=600)
if (
    min(PRICING_BASE_FARE_PAISE, PRICING_PER_KM_PAISE, PRICING_MIN_FARE_PAISE) < 0
    or min(PRICING_FREE_WEIGHT_GRAMS, PRICING_PER_EXTRA_KG_PAISE) < 0
):
    _problems.append("PRICING_* amounts and weights must not be negative.")
if ORDER_MAX_WEIGHT_GRAMS <= 0 or QUOTE_TTL_SECONDS <= 0:
    _problems.append("ORDER_MAX_WEIGHT_GRAMS and QUOTE_TTL_SECONDS must be positive.")
# Key of the HMAC the rider-side delivery-code check compares against (default: SECRET_KEY).
DELIVERY_CODE_HMAC_KEY = env.str("DELIVERY_CODE_HMAC_KEY", default="") or SECRET_KEY
RAZORPAY_API_BASE = env.str("RAZORPAY_API_BASE", default="https://api.razorpay.com/v1").rstrip("/")
if urlsplit(RAZORPAY_API_BASE).scheme not in {"http", "https"}:
    _problems.append("RAZORPAY_API_BASE must be an http(s) URL.")
RAZORPAY_HTTP_TIMEOUT_SECONDS = env.float("RAZORPAY_HTTP_TIMEOUT_SECONDS", default=10.0)
# Payments still pending after this many minutes are settled by asking Razorpay (beat, 10 min).
PAYMENT_RECONCILE_AFTER_MINUTES = env.int("PAYMENT_RECONCILE_AFTER_MINUTES", default=15)
if IS_PRODUCTION and RAZORPAY_KEY_ID and not (RAZORPAY_KEY_SECRET and RAZORPAY_WEBHOOK_SECRET):
    _problems.append(
        "RAZORPAY_KEY_ID is set without RAZORPAY_KEY_SECRET or RAZORPAY_WEBHOOK_SECRET: set "
        "both (payments need the secret, settling them needs the webhook), or none."
    )

# --- Riders and tracking ---------------------------------------------------------------------

# Rider location points are kept this long, then purged by the hourly housekeeping task.
RIDER_LOCATION_RETENTION_HOURS = env.int("RIDER_LOCATION_RETENTION_HOURS", default=48)
# A ping whose recorded_at is older than this is refused (400 location_stale).
RIDER_LOCATION_MAX_AGE_SECONDS = env.int("RIDER_LOCATION_MAX_AGE_SECONDS", default=120)
# A rider's fixes must lie this far apart in recorded time (429 location_too_frequent, not
# stored, not relayed); a GPS receiver gives one a second. 0 turns the rule off (the benchmark).
RIDER_MIN_FIX_SECONDS = env.float("RIDER_MIN_FIX_SECONDS", default=1.0)
if RIDER_MIN_FIX_SECONDS < 0:
    _problems.append("RIDER_MIN_FIX_SECONDS must not be negative.")
# Tracking and ops sockets one user may hold open at once, across all web processes (the
# next is closed with 4429; delivery/socket_quota.py). A customer following 3 live orders on
# two phones holds 6; the rider's own socket is not counted.
WS_MAX_SOCKETS_PER_USER = env.int("WS_MAX_SOCKETS_PER_USER", default=20)
if WS_MAX_SOCKETS_PER_USER <= 0:
    _problems.append("WS_MAX_SOCKETS_PER_USER must be positive.")
# A ping implying a faster trip from the previous fix is refused (location_impossible_speed).
RIDER_MAX_SPEED_KMH = env.float("RIDER_MAX_SPEED_KMH", default=120.0)
if min(RIDER_LOCATION_RETENTION_HOURS, RIDER_LOCATION_MAX_AGE_SECONDS, RIDER_MAX_SPEED_KMH) <= 0:
    _problems.append(
        "RIDER_LOCATION_RETENTION_HOURS, RIDER_LOCATION_MAX_AGE_SECONDS and RIDER_MAX_SPEED_KMH "
        "must be positive."
    )
# Dispatch: the first round offers within DISPATCH_RADIUS_M of the pickup; each further round
# widens by that much, up to DISPATCH_MAX_RADIUS_M.
DISPATCH_RADIUS_M = env.int("DISPATCH_RADIUS_M", default=3000)
DISPATCH_MAX_RADIUS_M = env.int("DISPATCH_MAX_RADIUS_M", default=12000)
# Riders offered an order at once (the k of the k-nearest search).
DISPATCH_OFFERS_PER_ROUND = env.int("DISPATCH_OFFERS_PER_ROUND", default=3)
# Pending offers one rider may hold at a time (for different orders).
DISPATCH_MAX_LIVE_OFFERS_PER_RIDER = env.int("DISPATCH_MAX_LIVE_OFFERS_PER_RIDER", default=1)
# An order nobody takes within this many seconds of searching is cancelled (reason no_rider).
DISPATCH_WINDOW_SECONDS = env.int("DISPATCH_WINDOW_SECONDS", default=600)
# An order whose last round found nobody is tried again by the sweep after this many seconds.
DISPATCH_RETRY_SECONDS = env.int("DISPATCH_RETRY_SECONDS", default=15)
# Seconds a rider has to accept an offer.
OFFER_TTL_SECONDS = env.int("OFFER_TTL_SECONDS", default=30)
if (
    min(
        DISPATCH_RADIUS_M,
        DISPATCH_OFFERS_PER_ROUND,
        DISPATCH_MAX_LIVE_OFFERS_PER_RIDER,
        DISPATCH_WINDOW_SECONDS,
        DISPATCH_RETRY_SECONDS,
        OFFER_TTL_SECONDS,
    )
    <= 0
    or DISPATCH_MAX_RADIUS_M < DISPATCH_RADIUS_M
):
    _problems.append(
        "DISPATCH_* and OFFER_TTL_SECONDS must be positive, and DISPATCH_MAX_RADIUS_M at least "
        "DISPATCH_RADIUS_M."
    )

# --- Ops console (/ops/) -----------------------------------------------------------------------

# Map tiles ({s}, {z}, {x}, {y} as Leaflet takes them); empty: no tiles, markers on a plain map.
MAP_TILE_URL = env.str("MAP_TILE_URL", default="https://tile.openstreetmap.org/{z}/{x}/{y}.png")
MAP_TILE_ATTRIBUTION = env.str("MAP_TILE_ATTRIBUTION", default="&copy; OpenStreetMap contributors")
if MAP_TILE_URL and urlsplit(MAP_TILE_URL.replace("{s}", "a")).scheme not in {"http", "https"}:
    _problems.append("MAP_TILE_URL must be an http(s) URL template, or empty for no tiles.")
# Alerts: an order searching this long without a rider; a rider on a delivery who has not moved
# (or sent no position) for this long; a paid order not handed to dispatch after this long.
OPS_ALERT_NO_RIDER_MINUTES = env.int("OPS_ALERT_NO_RIDER_MINUTES", default=5)
OPS_ALERT_STATIONARY_MINUTES = env.int("OPS_ALERT_STATIONARY_MINUTES", default=10)
OPS_ALERT_UNDISPATCHED_MINUTES = env.int("OPS_ALERT_UNDISPATCHED_MINUTES", default=2)
if (
    min(OPS_ALERT_NO_RIDER_MINUTES, OPS_ALERT_STATIONARY_MINUTES, OPS_ALERT_UNDISPATCHED_MINUTES)
    <= 0
):
    _problems.append("OPS_ALERT_* minutes must be positive.")

# Delivery steps: "arrived" is accepted only with a fresh position this close to the place.
DELIVERY_GEOFENCE_M = env.int("DELIVERY_GEOFENCE_M", default=200)
# Wrong delivery codes a rider may enter before the order needs ops.
DELIVERY_CODE_MAX_ATTEMPTS = env.int("DELIVERY_CODE_MAX_ATTEMPTS", default=5)
# Average speed behind the tracking ETA (straight-line distance / this speed).
DELIVERY_ETA_SPEED_KMH = env.float("DELIVERY_ETA_SPEED_KMH", default=18.0)
if min(DELIVERY_GEOFENCE_M, DELIVERY_CODE_MAX_ATTEMPTS, DELIVERY_ETA_SPEED_KMH) <= 0:
    _problems.append(
        "DELIVERY_GEOFENCE_M, DELIVERY_CODE_MAX_ATTEMPTS and DELIVERY_ETA_SPEED_KMH must be "
        "positive."
    )

# --- Accounts: OTP, SMS and JWT --------------------------------------------------------------


# A key of its own lets SECRET_KEY rotate without voiding the codes in flight.
OTP_HMAC_KEY = env.str("OTP_HMAC_KEY", default="") or SECRET_KEY
OTP_MAX_ATTEMPTS = 5  # wrong codes that burn a challenge
OTP_RESEND_COOLDOWN_SECONDS = env.int("OTP_RESEND_COOLDOWN_SECONDS", default=60)
OTP_MAX_SENDS_PER_HOUR = env.int("OTP_MAX_SENDS_PER_HOUR", default=5)
if OTP_EXPIRY_SECONDS <= 0:
    _problems.append(f"OTP_EXPIRY_SECONDS must be positive (got {OTP_EXPIRY_SECONDS}).")
if not 0 < OTP_RESEND_COOLDOWN_SECONDS < 3600:
    _problems.append("OTP_RESEND_COOLDOWN_SECONDS must be between 1 and 3599.")
if OTP_MAX_SENDS_PER_HOUR <= 0:
    _problems.append("OTP_MAX_SENDS_PER_HOUR must be positive.")
# SMS pumping: codes go only to numbers of these countries (ISO 3166 codes), and no more than
# SMS_HOURLY_BUDGET codes an hour go out in all; past it new codes are refused with 503 and
# otp_requests_refused_total{reason="sms_budget"} rises (docs/operations.md alerts on it).
OTP_ALLOWED_COUNTRIES = [code.upper() for code in _env_list("OTP_ALLOWED_COUNTRIES", ["IN"])]
SMS_HOURLY_BUDGET = env.int("SMS_HOURLY_BUDGET", default=2000)
import phonenumbers  # noqa: E402

_unknown_countries = sorted(set(OTP_ALLOWED_COUNTRIES) - phonenumbers.SUPPORTED_REGIONS)
if not OTP_ALLOWED_COUNTRIES or _unknown_countries:
    _problems.append(
        "OTP_ALLOWED_COUNTRIES must list ISO 3166 country codes such as IN,AE"
        + (f" (unknown: {', '.join(_unknown_countries)})." if _unknown_countries else ".")
    )
if SMS_HOURLY_BUDGET <= 0:
    _problems.append("SMS_HOURLY_BUDGET must be positive (login codes an hour, all numbers).")

_SMS_PROVIDER_SETTINGS = {
    "dummy": [],
    "msg91": ["MSG91_AUTH_KEY", "MSG91_OTP_TEMPLATE_ID"],
    "twilio": ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"],
}
SMS_PROVIDER = SMS_PROVIDER.strip().lower()
if SMS_PROVIDER not in _SMS_PROVIDER_SETTINGS:
    # A typo here would otherwise surface only when the first login code fails to go out.
    raise ImproperlyConfigured(
        f"SMS_PROVIDER must be one of {', '.join(_SMS_PROVIDER_SETTINGS)}, not {SMS_PROVIDER!r}."
    )
SMS_HTTP_TIMEOUT_SECONDS = env.float("SMS_HTTP_TIMEOUT_SECONDS", default=5.0)
MSG91_BASE_URL = env.str("MSG91_BASE_URL", default="https://control.msg91.com")
MSG91_AUTH_KEY = env.str("MSG91_AUTH_KEY", default="")
MSG91_OTP_TEMPLATE_ID = env.str("MSG91_OTP_TEMPLATE_ID", default="")
TWILIO_BASE_URL = env.str("TWILIO_BASE_URL", default="https://api.twilio.com")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
_sms_missing = [name for name in _SMS_PROVIDER_SETTINGS[SMS_PROVIDER] if not globals()[name]]
if _sms_missing:
    _sms_message = f"SMS_PROVIDER={SMS_PROVIDER} needs {', '.join(_sms_missing)}."
    if IS_PRODUCTION:
        _problems.append(_sms_message)
    else:
        STARTUP_WARNINGS.append(_sms_message + " Login codes cannot be sent until it is set.")
for _name in ("MSG91_BASE_URL", "TWILIO_BASE_URL"):
    if urlsplit(globals()[_name]).scheme not in {"http", "https"}:
        _problems.append(f"{_name} must be an http(s) URL.")
if IS_PRODUCTION and SMS_PROVIDER == "dummy":
    STARTUP_WARNINGS.append(
        "!!! SMS_PROVIDER=dummy in production: login codes are NOT sent to anyone's phone, "
        "they only sit in the database outbox (manage.py sms_outbox). "
        "Set SMS_PROVIDER=msg91 or twilio with its credentials. !!!"
    )


def _throttle_rate(name: str, default: str) -> str:
    rate = env.str(name, default=default).strip()
    count, _, period = rate.partition("/")
    if not count.isdigit() or not period or period[0] not in "smhd":
        _problems.append(f"{name} must look like 10/hour or 3/min (got {rate!r}).")
        return default
    return rate


# Scoped throttles on the default cache, which keeps counting in memory while Redis is down.
# In development every simulated user (manage.py simulate) and every test phone on the desk
# signs in from one address, so the per-IP limits are higher there by default; production and
# the tests keep the real ones.
_DEVELOPMENT_SERVER = DJANGO_ENV == "development" and not IS_TEST
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "otp_request_phone": _throttle_rate("THROTTLE_OTP_REQUEST_PHONE", "10/hour"),
    "otp_request_ip": _throttle_rate(
        "THROTTLE_OTP_REQUEST_IP", "1000/hour" if _DEVELOPMENT_SERVER else "30/hour"
    ),
    "otp_verify_phone": _throttle_rate("THROTTLE_OTP_VERIFY_PHONE", "20/hour"),
    "otp_verify_ip": _throttle_rate(
        "THROTTLE_OTP_VERIFY_IP", "2000/hour" if _DEVELOPMENT_SERVER else "60/hour"
    ),
    # per customer account: quotes asked for, and orders booked
    "quote_customer": _throttle_rate("THROTTLE_QUOTE_CUSTOMER", "30/min"),
    "order_customer": _throttle_rate("THROTTLE_ORDER_CUSTOMER", "10/min"),
    "readiness": "6/min",  # per person: each report runs a dozen checks for up to 30 s
}
# Gunicorn's uvicorn workers already replace the client address with the X-Forwarded-For value
# sent by trusted proxies (FORWARDED_ALLOW_IPS). DRF must not read the header a second time, or
# any client could choose its own per-IP throttle key.
REST_FRAMEWORK["NUM_PROXIES"] = 0
# Those proxies (gunicorn_conf.py reads the same variable): addresses or networks. With '*',
# uvicorn takes the leftmost X-Forwarded-For entry, which the client writes, as the address
# every per-IP limit counts; with a list it takes the rightmost address that is not a proxy.
FORWARDED_ALLOW_IPS = _env_list("FORWARDED_ALLOW_IPS", default=["127.0.0.1", "::1"])
if IS_PRODUCTION and "*" in FORWARDED_ALLOW_IPS:
    _problems.append(
        "FORWARDED_ALLOW_IPS must not be '*': any client could then choose the address the "
        "rate limits count. List the load balancer's addresses or networks, e.g. "
        "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16 inside a VPC (docs/deploy.md)."
    )
_bad_proxies = []
for _proxy in FORWARDED_ALLOW_IPS:
    try:
        if _proxy != "*":
            ipaddress.ip_network(_proxy)
    except ValueError:
        _bad_proxies.append(_proxy)
if _bad_proxies:
    _problems.append(
        "FORWARDED_ALLOW_IPS entries must be addresses or networks such as 10.0.0.0/8: "
        + ", ".join(_bad_proxies)
    )

ACCESS_TOKEN_LIFETIME_MINUTES = env.int("ACCESS_TOKEN_LIFETIME_MINUTES", default=15)
REFRESH_TOKEN_LIFETIME_DAYS = env.int("REFRESH_TOKEN_LIFETIME_DAYS", default=30)
if ACCESS_TOKEN_LIFETIME_MINUTES <= 0 or REFRESH_TOKEN_LIFETIME_DAYS <= 0:
    _problems.append(
        "ACCESS_TOKEN_LIFETIME_MINUTES and REFRESH_TOKEN_LIFETIME_DAYS must be positive."
    )
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=ACCESS_TOKEN_LIFETIME_MINUTES),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=REFRESH_TOKEN_LIFETIME_DAYS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
}

# --- Logging (checklist phase 6) ------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO" if IS_PRODUCTION else "DEBUG").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="") or ("json" if IS_PRODUCTION else "console")
# Python warnings (e.g. from libraries at start-up) go through the same handlers and format.
logging.captureWarnings(True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "django_guid.log_filters.CorrelationId"},
        "celery_tracing": {"()": "django_guid.integrations.celery.log_filters.CeleryTracing"},
        "redact_tokens": {"()": "config.logs.RedactQueryTokens"},
        "quiet_canaries": {"()": "config.logs.QuietCanaries"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
            "rename_fields": {
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "correlation_id": "request_id",
            },
        },
        "console": {
            "format": "%(asctime)s %(levelname)-7s [%(correlation_id)s] %(name)s: %(message)s",
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT if LOG_FORMAT in {"json", "console"} else "json",
            "filters": ["request_id", "celery_tracing", "redact_tokens", "quiet_canaries"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
        # Every SQL statement at DEBUG would drown the logs.
        "django.db.backends": {"handlers": ["stdout"], "level": "WARNING", "propagate": False},
        "django.utils.autoreload": {"level": "WARNING"},
        # Celery at DEBUG dumps its internals; its INFO lines already say what each task did.
        "celery": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "django_guid": {"handlers": ["stdout"], "level": "WARNING", "propagate": False},
        "django.template": {"level": "INFO"},
        "redis": {"level": "WARNING"},
        "asyncio": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "faker": {"level": "WARNING"},
        "factory": {"level": "WARNING"},
    },
}

# --- Error tracking -------------------------------------------------------------------------

SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
if SENTRY_DSN and not _problems:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration as SentryCeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.redis import RedisIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=DJANGO_ENV,
        release=env.str("RELEASE", default="") or None,
        integrations=[DjangoIntegration(), SentryCeleryIntegration(), RedisIntegration()],
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
        send_default_pii=False,
    )

# --- Refuse to run an unsafe production configuration -----------------------------------------

if _problems:
    raise ImproperlyConfigured(
        f"Refusing to start (DJANGO_ENV={DJANGO_ENV}); fix these settings:\n"
        + "\n".join(f"  - {problem}" for problem in _problems)
    )

logging.getLogger(__name__).debug("settings loaded for %s", DJANGO_ENV)
