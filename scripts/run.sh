#!/usr/bin/env bash
# `make run`: web and sockets (gunicorn + uvicorn workers), Celery workers and beat in the
# foreground. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."

.venv/bin/python manage.py seed_demo
port=$(.venv/bin/python -c 'import os; print(os.environ.get("PORT", "5000"))')
staff_password=$(grep -E '^DEMO_STAFF_PASSWORD=' .env | cut -d= -f2- || true)
redis_url=$(.venv/bin/python manage.py shell -v 0 -c 'from django.conf import settings; print(settings.REDIS_URL if settings.USE_REDIS else "")' 2>/dev/null)

processes=(web sockets worker worker_high beat)
sockets="ws://localhost:$port/ws/   (served by web: no Redis, one process)"
if [ -n "$redis_url" ]; then
  # The sockets role on the next port, its workers never recycled by request count;
  # /api/config/ tells the apps where it is (SOCKETS_URL).
  export SOCKETS_PORT="${SOCKETS_PORT:-$((port + 1))}"
  export SOCKETS_URL="${SOCKETS_URL:-ws://localhost:$SOCKETS_PORT}"
  sockets="$SOCKETS_URL/ws/   (processes of their own; /api/config/ says so)"
else
  # Without Redis, Celery runs tasks inline in the web process, and the web process serves the
  # sockets (an in-memory channel layer reaches no other process): web alone.
  processes=(web)
fi

cat <<BANNER

  Hyperlocal delivery backend (development)
  API       http://localhost:$port/api/v1/
  API docs  http://localhost:$port/api/docs/
  Sockets   $sockets
  Health    http://localhost:$port/health/
  Metrics   http://localhost:$port/metrics
  Admin     http://localhost:$port/admin/
            sign in with phone +919000000001 and password ${staff_password:-<set DEMO_STAFF_PASSWORD in .env>}
  Ops       http://localhost:$port/ops/   (live map, queue and alerts; same sign-in)
  Simulate  .venv/bin/python manage.py simulate --riders 50 --orders-per-minute 10
            (in another terminal: riders and customers on the real API, so the map moves)

BANNER

# -e /dev/null: settings read .env themselves, and the real environment must win over it.
exec .venv/bin/honcho start -e /dev/null -f Procfile.dev -p "$port" "${processes[@]}"
