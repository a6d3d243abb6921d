"""Starts the service's processes on loopback, for the tests, the proof suite and the benchmarks.

Tooling, not an app (no models, not in INSTALLED_APPS): it may import the apps, and no app
imports it. One module per thing it starts:

  env        the project's paths and the environments the processes get (starts nothing)
  ports      free loopback ports, and a listener that never answers (a hung dependency)
  wait       wait_for, the poll every launcher waits with
  web        gunicorn serving the app: the tests' and proof's Server, the benchmarks' WebServer
  redis      a throwaway redis-server
  postgres   a throwaway PostgreSQL cluster
  celery     `celery worker` and `celery beat`
  commands   one-off manage.py and `python -c` commands in a fresh interpreter
  stack      the whole service in production settings: web, worker, beat, Redis, fake Razorpay
  bench_env  the benchmarks' own database, Redis and Django, and their processes' environment
  containers Podman: the image, and PostGIS and Redis containers beside it
"""

import logging

# One line per request from httpx/httpcore would bury the server output shown on failures.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)
