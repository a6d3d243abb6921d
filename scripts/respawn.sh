#!/usr/bin/env bash
# Runs a command again each time it exits, as a platform's restart policy does: `make run`'s
# Celery workers and beat (Procfile.dev). A worker ends itself when it stalls
# (core/worker_liveness.py), beat when Redis goes away; honcho would stop every process then. The stop signal is not passed on: honcho (killpg) and a terminal's
# Ctrl-C signal the whole process group, command included, and a second SIGTERM would cut
# Celery's soft shutdown short. On SIGTERM or SIGINT this script waits for the command to end
# and exits with its status instead of starting it again.
set -uo pipefail

stopping=0
trap 'stopping=1' TERM INT

while :; do
  "$@" &
  child=$!
  # A trapped signal ends `wait` early: wait again until the command itself has ended.
  while :; do
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || break
  done
  if [ "$stopping" -eq 1 ]; then exit "$status"; fi
  echo "respawn: '$1' exited with status $status; starting it again in 2 s" >&2
  sleep 2
  if [ "$stopping" -eq 1 ]; then exit "$status"; fi
done
