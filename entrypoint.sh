#!/usr/bin/env bash
# Container entrypoint: one image, four roles. Validates the environment, waits for
# PostgreSQL and Redis (exponential backoff), migrates on the primary only under a PostgreSQL
# advisory lock, then `exec`s the role so that SIGTERM reaches the server itself.
#
#   entrypoint.sh              web (RUN_GUNICORN=1, the default) or worker (RUN_GUNICORN=0)
#   entrypoint.sh web|sockets|worker|beat|migrate [extra args for gunicorn / celery]
#   entrypoint.sh <command...> anything else runs as given (e.g. python manage.py shell),
#                              with no checks and no waiting
#   PROCESS_ROLE=web|sockets|worker|beat|migrate  chooses the role without arguments.
#
# web     gunicorn (uvicorn workers, gunicorn_conf.py); graceful stop within 30 s.
# sockets gunicorn for the WebSockets (/ws/): workers not recycled by request count; a stop
#         drains the sockets over SOCKETS_DRAIN_SECONDS (20), so it takes up to 35 s.
# worker  celery worker on CELERY_QUEUES (default high,default,low), REMAP_SIGTERM=SIGQUIT so
#         a SIGTERM is Celery's 25 s soft shutdown.
# beat    celery beat (redbeat); only with IS_PRIMARY=1; a second one waits for the Redis lock.
# migrate one shot: migrations under the lock, then exit (K8s Job, Railway pre-deploy, ECS task).
#
# IS_PRIMARY=1: this instance migrates (under the lock) and collects static files before it
# starts. Every other web/worker instance waits until the schema is current.
# Colour only on a terminal or with FORCE_COLOR=1 (NO_COLOR wins): log collectors such as
# CloudWatch get plain text. docs/deploy.md lists every variable read here.
set -Eeuo pipefail

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
APP_DIR="${APP_DIR:-$(dirname "$SCRIPT")}"
cd "$APP_DIR"
# The image puts its virtualenv first on PATH; elsewhere APP_VENV names one.
if [ -n "${APP_VENV:-}" ]; then
  PATH="$APP_VENV/bin:$PATH"
fi
export PATH PYTHONUNBUFFERED=1
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings}"

# --- Output -----------------------------------------------------------------------------------
if [ -z "${NO_COLOR:-}" ] && { [ -n "${FORCE_COLOR:-}" ] || [ -t 1 ]; }; then
  C_RED=$'\033[1;31m' C_GREEN=$'\033[32m' C_YELLOW=$'\033[33m' C_BLUE=$'\033[1;34m' C_OFF=$'\033[0m'
else
  C_RED='' C_GREEN='' C_YELLOW='' C_BLUE='' C_OFF=''
fi
stamp() { date -u '+%Y-%m-%dT%H:%M:%SZ'; }
info() { printf '%s %s[entrypoint]%s %s\n' "$(stamp)" "$C_BLUE" "$C_OFF" "$*"; }
ok() { printf '%s %s[entrypoint] %s%s\n' "$(stamp)" "$C_GREEN" "$*" "$C_OFF"; }
warn() { printf '%s %s[entrypoint] %s%s\n' "$(stamp)" "$C_YELLOW" "$*" "$C_OFF"; }
die() {
  printf '%s %s[entrypoint] error: %s%s\n' "$(stamp)" "$C_RED" "$*" "$C_OFF" >&2
  exit 1
}

# A SIGTERM while waiting (a deploy cancelled, a platform giving up) stops at once, cleanly.
trap 'warn "stopped by a signal before the service started"; exit 143' TERM INT

truthy() {
  case "${1,,}" in
    1 | true | yes | on) return 0 ;;
    "" | 0 | false | no | off) return 1 ;;
    *) die "$2 must be 1 or 0 (got '$1')" ;;
  esac
}

positive_int() {
  if ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -eq 0 ]; then
    die "$2 must be a positive whole number (got '$1')"
  fi
}

# --- Role -------------------------------------------------------------------------------------
RUN_GUNICORN="${RUN_GUNICORN:-1}"
case "$RUN_GUNICORN" in
  0 | 1) ;;
  *) die "RUN_GUNICORN must be 1 (web) or 0 (Celery worker), not '$RUN_GUNICORN'" ;;
esac

ROLE=""
if [ $# -gt 0 ]; then
  case "$1" in
    web | sockets | worker | beat | migrate)
      ROLE="$1"
      shift
      ;;
    *) ROLE="command" ;;
  esac
elif [ -n "${PROCESS_ROLE:-}" ]; then
  case "$PROCESS_ROLE" in
    web | sockets | worker | beat | migrate) ROLE="$PROCESS_ROLE" ;;
    *) die "PROCESS_ROLE must be web, sockets, worker, beat or migrate, not '$PROCESS_ROLE'" ;;
  esac
elif [ "$RUN_GUNICORN" = 1 ]; then
  ROLE="web"
else
  ROLE="worker"
fi

# --- Root: fix directory ownership, then drop to the app user ---------------------------------
# The image runs as appuser (USER in the Dockerfile). Started as root anyway (a platform that
# overrides the user, a volume mounted root-owned), the directories are handed to APP_USER and
# the script runs again as that user: the service itself never runs as root.
APP_USER="${APP_USER:-appuser}"
if [ "$(id -u)" = 0 ] && [ -z "${ALLOW_ROOT:-}" ]; then
  id "$APP_USER" >/dev/null 2>&1 || die "running as root and APP_USER '$APP_USER' does not exist; refusing to run the service as root"
  for dir in "${STATIC_ROOT:-$APP_DIR/staticfiles}" "${MEDIA_ROOT:-$APP_DIR/media}" ${PROMETHEUS_MULTIPROC_DIR:+"$PROMETHEUS_MULTIPROC_DIR"}; do
    mkdir -p "$dir"
    chown -R "$APP_USER:$(id -g "$APP_USER")" "$dir"
  done
  info "fixed ownership of the writable directories; continuing as $APP_USER"
  HOME="$(getent passwd "$APP_USER" | cut -d: -f6)"
  export HOME
  if [ "$ROLE" != command ]; then set -- "$ROLE" "$@"; fi
  exec setpriv --reuid="$APP_USER" --regid="$(id -g "$APP_USER")" --init-groups -- "$SCRIPT" "$@"
fi

if [ "$ROLE" = command ]; then
  if [ "$1" = manage.py ]; then
    exec python "$@"
  fi
  exec "$@"
fi

# --- Environment checks the shell can do ------------------------------------------------------
PORT="${PORT:-5000}"
if ! [[ "$PORT" =~ ^[0-9]{1,5}$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
  die "PORT must be a port number (1-65535), not '$PORT'"
fi
export PORT
IS_PRIMARY_RAW="${IS_PRIMARY:-}"
PRIMARY=0
if truthy "$IS_PRIMARY_RAW" IS_PRIMARY; then PRIMARY=1; fi
DB_WAIT_TIMEOUT="${DB_WAIT_TIMEOUT:-60}"
REDIS_WAIT_TIMEOUT="${REDIS_WAIT_TIMEOUT:-60}"
MIGRATION_WAIT_TIMEOUT="${MIGRATION_WAIT_TIMEOUT:-300}"
WAIT_MAX_DELAY="${WAIT_MAX_DELAY:-10}"
positive_int "$DB_WAIT_TIMEOUT" DB_WAIT_TIMEOUT
positive_int "$REDIS_WAIT_TIMEOUT" REDIS_WAIT_TIMEOUT
positive_int "$MIGRATION_WAIT_TIMEOUT" MIGRATION_WAIT_TIMEOUT
positive_int "$WAIT_MAX_DELAY" WAIT_MAX_DELAY
CELERY_QUEUES="${CELERY_QUEUES:-high,default,low}"
[[ "$CELERY_QUEUES" =~ ^[a-z]+(,[a-z]+)*$ ]] || die "CELERY_QUEUES must be queue names separated by commas, e.g. high,default,low (got '$CELERY_QUEUES')"
if [ "$ROLE" = beat ] && [ "$PRIMARY" != 1 ]; then
  die "celery beat runs on the primary only: set IS_PRIMARY=1 on exactly one beat service"
fi
command -v python >/dev/null || die "python is not on PATH (set APP_VENV to the virtualenv)"

info "role: $ROLE, primary: $PRIMARY, port: $PORT, user: $(id -un 2>/dev/null || id -u)"

# --- Django's own validation (DJANGO_ENV=production refuses unsafe settings) -------------------
# The same settings every process loads; their refusal lists every problem at once. What they
# resolve (database address, Redis URL, directories) drives the waits below.
if ! resolved="$(python - 2>&1 <<'PY'
import shlex
import sys

try:
    import django

    django.setup()
    from django.conf import settings
except Exception as error:  # ImproperlyConfigured, a bad value, an import error
    print(f"{type(error).__name__}: {error}")
    sys.exit(1)

db = settings.DATABASES["default"]
values = {
    "DB_HOST": db.get("HOST") or "127.0.0.1",
    "DB_PORT": str(db.get("PORT") or 5432),
    "DB_NAME": db.get("NAME") or "",
    "DB_USER": db.get("USER") or "",
    "DB_PASSWORD": db.get("PASSWORD") or "",
    "DB_SSLMODE": db.get("OPTIONS", {}).get("sslmode", ""),
    "RESOLVED_REDIS_URL": settings.REDIS_URL,
    "RESOLVED_STATIC_ROOT": str(settings.STATIC_ROOT),
    "RESOLVED_MEDIA_ROOT": str(settings.MEDIA_ROOT),
    "RESOLVED_DJANGO_ENV": settings.DJANGO_ENV,
}
for name, value in values.items():
    print(f"{name}={shlex.quote(value)}")
PY
)"; then
  die "the settings refuse to load:
$resolved"
fi
# Only NAME=quoted-value lines (shlex.quote) reach eval; anything else the settings printed
# (a warning) is shown, not run.
eval "$(grep -E '^[A-Z_]+=' <<<"$resolved")"
grep -vE '^[A-Z_]+=' <<<"$resolved" || true
ok "settings valid (DJANGO_ENV=$RESOLVED_DJANGO_ENV)"

# --- Writable directories ---------------------------------------------------------------------
writable_dir() {
  mkdir -p "$1" 2>/dev/null || true
  [ -d "$1" ] && [ -w "$1" ]
}
if [ "$ROLE" = web ] && [ "$PRIMARY" = 1 ]; then
  writable_dir "$RESOLVED_STATIC_ROOT" || die "STATIC_ROOT $RESOLVED_STATIC_ROOT is not writable by $(id -un 2>/dev/null || id -u): the primary collects static files there"
fi
if [ "$ROLE" = web ] || [ "$ROLE" = sockets ]; then
  writable_dir "$RESOLVED_MEDIA_ROOT" || warn "MEDIA_ROOT $RESOLVED_MEDIA_ROOT is not writable: uploads will fail"
  if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    writable_dir "$PROMETHEUS_MULTIPROC_DIR" || die "PROMETHEUS_MULTIPROC_DIR $PROMETHEUS_MULTIPROC_DIR is not writable"
  fi
fi

# --- Waiting for PostgreSQL and Redis ---------------------------------------------------------
# wait_for NAME TIMEOUT PROBE...: runs PROBE until it succeeds; sleeps 1, 2, 4, ... seconds
# (capped at WAIT_MAX_DELAY) between tries and gives up after TIMEOUT seconds in all.
wait_for() {
  local name="$1" timeout="$2" delay=1 attempt=1 started=$SECONDS reason remaining
  shift 2
  while true; do
    if reason="$("$@" 2>&1)"; then
      ok "$name is up"
      return 0
    fi
    reason="$(printf '%s' "$reason" | grep -v '^\s*$' | tail -n 1)"
    remaining=$((timeout - (SECONDS - started)))
    if [ "$remaining" -le 0 ]; then
      die "$name still unreachable after ${timeout}s ($attempt attempts): ${reason:-no answer}"
    fi
    [ "$delay" -le "$remaining" ] || delay="$remaining"
    warn "waiting for $name (attempt $attempt, retrying in ${delay}s): ${reason:-no answer}"
    sleep "$delay" &
    wait $! || true
    attempt=$((attempt + 1))
    delay=$((delay * 2))
    [ "$delay" -le "$WAIT_MAX_DELAY" ] || delay="$WAIT_MAX_DELAY"
  done
}

# The probes run through wait_for "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
probe_postgres() {
  PGHOST="$DB_HOST" PGPORT="$DB_PORT" PGDATABASE="$DB_NAME" PGUSER="$DB_USER" \
    PGPASSWORD="$DB_PASSWORD" PGSSLMODE="${DB_SSLMODE:-prefer}" PGCONNECT_TIMEOUT=3 \
    python -c 'import psycopg; psycopg.connect("").close()'
}

# shellcheck disable=SC2317
probe_redis() {
  python -c '
import sys
import redis
client = redis.Redis.from_url(sys.argv[1], socket_connect_timeout=3, socket_timeout=3)
client.ping()
' "$RESOLVED_REDIS_URL"
}

wait_for "PostgreSQL at $DB_HOST:$DB_PORT/$DB_NAME" "$DB_WAIT_TIMEOUT" probe_postgres
if [ -n "$RESOLVED_REDIS_URL" ]; then
  REDIS_SHOWN="$(python -c 'import sys; from config.redis_probe import redact; print(redact(sys.argv[1]))' "$RESOLVED_REDIS_URL")"
  wait_for "Redis at $REDIS_SHOWN" "$REDIS_WAIT_TIMEOUT" probe_redis
else
  warn "no REDIS_URL: not waiting for Redis"
fi

# --- Migrations and static files --------------------------------------------------------------
migrate_under_lock() {
  info "migrating (under the PostgreSQL advisory lock)"
  python manage.py migrate_locked --timeout "$MIGRATION_WAIT_TIMEOUT" ||
    die "migrations failed (see above); not starting"
}

case "$ROLE" in
  migrate)
    migrate_under_lock
    ok "migrations done"
    exit 0
    ;;
  web | sockets | worker)
    if [ "$PRIMARY" = 1 ]; then
      migrate_under_lock
      if [ "$ROLE" = web ]; then
        info "collecting static files into $RESOLVED_STATIC_ROOT"
        python manage.py collectstatic --noinput -v 0 || die "collectstatic failed; not starting"
      fi
    elif truthy "${WAIT_FOR_MIGRATIONS:-1}" WAIT_FOR_MIGRATIONS; then
      python manage.py migrate_locked --wait --timeout "$MIGRATION_WAIT_TIMEOUT" ||
        die "the schema is not current; not starting"
    fi
    ;;
esac

# --- The role itself (exec: it becomes this process and receives the signals) -----------------
trap - TERM INT
case "$ROLE" in
  web)
    ok "starting gunicorn on port $PORT"
    exec python -m gunicorn -c gunicorn_conf.py "$@" config.asgi:application
    ;;
  sockets)
    ok "starting gunicorn for the sockets on port $PORT"
    export SERVER_ROLE=sockets
    exec python -m gunicorn -c gunicorn_conf.py "$@" config.asgi:application
    ;;
  worker)
    # billiard reads this before any Celery code: SIGTERM becomes the 25 s soft shutdown.
    export REMAP_SIGTERM=SIGQUIT
    ok "starting a Celery worker on queues $CELERY_QUEUES"
    worker_args=(-A config worker -Q "$CELERY_QUEUES" -n "${CELERY_WORKER_NAME:-worker}@%h" --loglevel "${CELERY_LOG_LEVEL:-INFO}")
    if [ -n "${CELERY_CONCURRENCY:-}" ]; then
      positive_int "$CELERY_CONCURRENCY" CELERY_CONCURRENCY
      worker_args+=(--concurrency "$CELERY_CONCURRENCY")
    fi
    exec python -m celery "${worker_args[@]}" "$@"
    ;;
  beat)
    ok "starting celery beat (redbeat: a second beat waits for the lock)"
    exec python -m celery -A config beat --loglevel "${CELERY_LOG_LEVEL:-INFO}" "$@"
    ;;
esac
die "unknown role '$ROLE'"
