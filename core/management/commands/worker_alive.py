"""The Celery worker's liveness probe: exit 0 if this container's worker is consuming, else 1.

Reads only the files the worker's canary watchdog writes (core/worker_liveness.py), so it
answers in the time Django takes to start, whatever Redis and PostgreSQL are doing. It fails
for a worker whose canary has waited WORKER_STALL_SECONDS with a pool process free, whose
process is gone, or whose watchdog has gone quiet. Used by deploy/docker/healthcheck.sh (the
image's HEALTHCHECK, ECS and Compose) and the Kubernetes worker Deployments.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.worker_liveness import probe


class Command(BaseCommand):
    help = "Exit 0 if the Celery worker(s) of this container are consuming their queues."
    requires_system_checks: list = []  # a probe must not touch the database

    def add_arguments(self, parser):
        parser.add_argument(
            "--node",
            default="",
            help="the worker's node name (e.g. worker@host); default: every running worker "
            "with state in WORKER_LIVENESS_DIR",
        )

    def handle(self, *args, node: str, **options):
        alive, lines = probe(Path(settings.WORKER_LIVENESS_DIR), node=node)
        for line in lines:
            self.stdout.write(line)
        if not alive:
            raise CommandError("worker not consuming", returncode=1)
