#!/usr/bin/env bash
# `make run`: web (gunicorn + uvicorn workers), Celery worker and beat in the foreground.
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."

.venv/bin/python manage.py seed_demo
port=$(.venv/bin/python -c 'import os; print(os.environ.get("PORT", "5000"))')
staff_password=$(grep -E '^DEMO_STAFF_PASSWORD=' .env | cut -d= -f2- || true)
redis_url=$(.venv/bin/python manage.py shell -v 0 -c 'from django.conf import settings; print(settings.REDIS_URL if settings.USE_REDIS else "")' 2>/dev/null)

cat <<BANNER

  Hyperlocal delivery backend (development)
  API       http://localhost:$port/api/v1/
  API docs  http://localhost:$port/api/docs/
  Health    http://localhost:$port/health/
  Metrics   http://localhost:$port/metrics
  Admin     http://localhost:$port/admin/
            sign in with phone +919000000001 and password ${staff_password:-<set DEMO_STAFF_PASSWORD in .env>}
  Ops       http://localhost:$port/ops/   (live map, queue and alerts; same sign-in)
  Simulate  .venv/bin/python manage.py simulate --riders 50 --orders-per-minute 10
            (in another terminal: riders and customers on the real API, so the map moves)

BANNER

processes=(web worker worker_high beat)
if [ -z "$redis_url" ]; then
  # Without Redis, Celery runs tasks inline in the web process: no worker or beat to start.
  processes=(web)
fi
# -e /dev/null: settings read .env themselves, and the real environment must win over it.
exec .venv/bin/honcho start -e /dev/null -f Procfile.dev -p "$port" "${processes[@]}"
