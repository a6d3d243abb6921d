#!/bin/sh
# The redis stand-in's entrypoint: `redis-server ARGS` runs without protected mode, on every
# interface, as the official image's server does.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --protected-mode no --bind 0.0.0.0 "$@"
fi
exec "$@"
