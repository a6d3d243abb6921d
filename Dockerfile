# syntax=docker/dockerfile:1.7
# One image, every role (web, worker, beat, migrate): see entrypoint.sh and docs/deploy.md.
#   docker build -t delivery .
#   docker run --env-file .env -p 5000:5000 delivery            # web (RUN_GUNICORN=1)
#   docker run --env-file .env -e RUN_GUNICORN=0 delivery       # Celery worker
# Debian 13 (trixie) is pinned so the runtime library package names below stay valid.
# `make image` (scripts/image.sh) builds with Podman, on a stand-in of this base where no
# registry is reachable; nothing below differs between the two.
ARG PYTHON_IMAGE=python:3.13-slim-trixie

# --- builder: the virtualenv, from uv.lock (hashes checked), with a wheel cache --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_CACHE_DIR=/root/.cache/uv
# Compilers only here, for any dependency without a wheel for this platform; none of this
# stage but /opt/venv reaches the final image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libpq-dev \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /build
COPY pyproject.toml uv.lock ./
# The cache mount keeps downloaded and built wheels between builds: a change to the code (not
# to uv.lock) reuses this layer, a change to uv.lock reuses every unchanged wheel.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project --python /usr/local/bin/python3

# --- runtime: runtime libraries only, non-root ------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    APP_DIR=/app \
    DJANGO_SETTINGS_MODULE=config.settings \
    DJANGO_ENV=production \
    DJANGO_ENV_FILE= \
    PORT=5000 \
    RUN_GUNICORN=1 \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/app/media \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
# libpq5: PostgreSQL client library; GDAL/GEOS/PROJ: GeoDjango (loaded with ctypes);
# redis-tools and netcat for debugging and the health check; tini as PID 1; postgresql-client
# for `manage.py backup` (pg_dump, pg_restore: Debian 13's 17, which dumps servers up to 17).
# Versions follow the base image's Debian release (security updates arrive on rebuild).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpq5 libgdal36 libgeos-c1t64 libproj25 redis-tools netcat-openbsd tini \
        postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && pg_dump --version \
    && python -c "from ctypes.util import find_library as f; import sys; missing = [n for n in ('gdal', 'geos_c', 'proj', 'pq') if not f(n)]; sys.exit(f'missing libraries: {missing}' if missing else 0)"
RUN groupadd --gid 1000 appuser \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin appuser
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The code belongs to root: the app user can read it, not change it; it writes only below.
COPY . /app
RUN chmod 0755 /app/entrypoint.sh /app/deploy/docker/healthcheck.sh \
    && mkdir -p /app/staticfiles /app/media /tmp/prometheus \
    && chown appuser:appuser /app/staticfiles /app/media /tmp/prometheus
# Numeric, so Kubernetes' runAsNonRoot can verify it: appuser, UID/GID 1000.
USER 1000:1000
# Static files are baked into the image so every replica serves them (WhiteNoise); the
# primary collects them again at start, which matters only with a shared volume (Compose).
RUN DJANGO_ENV=development DJANGO_SECRET_KEY=collectstatic-at-build-time-only REDIS_URL='' \
    python manage.py collectstatic --noinput -v 0
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=25s --start-period=90s --retries=3 \
    CMD ["/app/deploy/docker/healthcheck.sh"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/app/entrypoint.sh"]
CMD []
