#!/usr/bin/env bash
# `make test`: lint, then the whole suite against real PostgreSQL + PostGIS and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python -c 'import redis, sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2).ping()' \
    "${REDIS_URL:-redis://127.0.0.1:6379/0}" 2>/dev/null; then
  cat >&2 <<'MSG'
Redis is not reachable at ${REDIS_URL:-redis://127.0.0.1:6379/0}; the suite needs a real one.
Start it:  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
MSG
  exit 1
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
