#!/usr/bin/env bash
# `make test`: lint, then the whole suite against real PostgreSQL + PostGIS and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

# The suite gets its own Redis database: the Celery tests flush it, and a developer's
# `make run` keeps its broker and cache on the .env one.
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"

if ! .venv/bin/python -c 'import redis, sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2).ping()' \
    "$REDIS_URL" 2>/dev/null; then
  cat >&2 <<MSG
Redis is not reachable at $REDIS_URL; the suite needs a real one.
Start it:  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
MSG
  exit 1
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
shellcheck scripts/*.sh .ci/run entrypoint.sh deploy/docker/*.sh deploy/podman/*.sh
.venv/bin/hadolint Dockerfile
# The deployment files against their schemas (core/tests/test_deploy_configs.py runs these too).
.venv/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
.venv/bin/check-jsonschema --schemafile deploy/schemas/railway.schema.json deploy/railway/*.json
.venv/bin/kubernetes-validate --strict --quiet deploy/k8s/*.yaml
if [ $# -gt 0 ]; then
  exec .venv/bin/pytest "$@"
fi
# The whole suite, its 40 slowest tests listed at the end. Then every checklist line with tests
# must have had a passing one in this run (a behaviour test where lines.toml asks for one), and
# docs/checklist.md must be current (checklist/report.py).
export CHECKLIST_RECORD="$PWD/.local/checklist"
rm -f "$CHECKLIST_RECORD/results.json"
.venv/bin/pytest --durations=40
exec .venv/bin/python -m checklist.report --check
