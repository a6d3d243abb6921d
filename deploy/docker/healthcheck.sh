#!/usr/bin/env bash
# Docker HEALTHCHECK / ECS container health check, by role (see entrypoint.sh).
#   web, sockets: the port accepts connections (netcat, as the checklist asks), then /health/ answers
#           HTTP. Any answer counts (503 means "a dependency is down", which restarting this
#           container cannot fix; load balancers route on /health/'s status themselves).
#           HEALTHCHECK_STRICT=1 requires 200.
#   worker: `manage.py worker_alive`: the worker is consuming (its canary task ran in time, see
#           core/worker_liveness.py), which a Celery ping cannot tell: the control channel
#           answers while a stalled consumer takes nothing.
#   beat, migrate: the process being alive is the check.
set -euo pipefail

PORT="${PORT:-5000}"
# The role as entrypoint.sh chose it: its first argument (in the image PID 1 is tini running
# entrypoint.sh, so `docker run IMAGE worker` is checked as a worker), else PROCESS_ROLE, else
# RUN_GUNICORN.
role=""
if [ -r /proc/1/cmdline ]; then
  mapfile -d '' -t pid1 </proc/1/cmdline || true
  for i in "${!pid1[@]}"; do
    if [[ "${pid1[$i]}" == */entrypoint.sh ]]; then
      case "${pid1[$((i + 1))]:-}" in web | sockets | worker | beat | migrate) role="${pid1[$((i + 1))]}" ;; esac
      break
    fi
  done
fi
role="${role:-${PROCESS_ROLE:-}}"
if [ -z "$role" ]; then
  if [ "${RUN_GUNICORN:-1}" = 0 ]; then role=worker; else role=web; fi
fi

case "$role" in
  web | sockets)
    if command -v nc >/dev/null; then
      nc -z -w 3 127.0.0.1 "$PORT" || { echo "nothing listens on port $PORT"; exit 1; }
    else
      (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || { echo "nothing listens on port $PORT"; exit 1; }
    fi
    exec python - "$PORT" <<'PY'
import sys
import urllib.error
import urllib.request
import os

url = f"http://127.0.0.1:{sys.argv[1]}/health/"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        status = response.status
except urllib.error.HTTPError as error:
    status = error.code
except OSError as error:
    print(f"{url}: no answer ({error})")
    sys.exit(1)
strict = os.environ.get("HEALTHCHECK_STRICT", "") == "1"
print(f"{url}: {status}")
sys.exit(0 if status == 200 or (not strict and status == 503) else 1)
PY
    ;;
  worker)
    cd "$(dirname "$0")/../.."  # the project, /app in the image
    exec timeout 20 python manage.py worker_alive --node "${CELERY_WORKER_NAME:-worker}@$(hostname)"
    ;;
  *)
    exit 0
    ;;
esac
