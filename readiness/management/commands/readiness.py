"""`manage.py readiness`: the production-readiness checklist, checked inside this deployment.

    python manage.py readiness                      # this container's server at $PORT
    python manage.py readiness --url https://api.example.com
    python manage.py readiness --json               # for machines (as /api/v1/ops/readiness/)

One line per checklist id the report checks (readiness/), then the counts. Exits 1 when
any line FAILs, so a deploy pipeline can stop on it.
"""

import json
import os
import sys
from typing import TextIO

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

import readiness


class Command(BaseCommand):
    help = "Checks every checklist line that can be checked from inside this deployment."
    # The report must come out even when a system check would stop other commands.
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            help="The web server to check (default: http://127.0.0.1:$PORT, this container's).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the report as JSON, as the API does."
        )

    def handle(self, *args, **options):
        if self.stdout._out is sys.stdout:  # run as a command, not call_command(stdout=...)
            self.stdout = OutputWrapper(_stdout_for_the_report_only())
        url = options["url"] or readiness.default_base_url()
        document = readiness.report(readiness.run(url), url)
        if options["json"]:
            self.stdout.write(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            self._print(document)
        failures = document["summary"]["fail"]
        if failures:
            raise CommandError(f"{failures} checklist line(s) FAIL", returncode=1)

    def _print(self, document: dict) -> None:
        styles = {"PASS": self.style.SUCCESS, "FAIL": self.style.ERROR, "SKIP": self.style.WARNING}
        for line in document["results"]:
            status = styles[line["status"]](line["status"])
            self.stdout.write(f"{status} {line['id']:<6} {line['text']} — {line['detail']}")
        summary = document["summary"]
        self.stdout.write(
            f"\n{document['url']}: {summary['pass']} PASS, {summary['fail']} FAIL, "
            f"{summary['skip']} SKIP of {len(document['results'])} checklist lines checked live"
        )


def _stdout_for_the_report_only() -> TextIO:
    """From here on, whatever this process writes to stdout goes to stderr: log lines (the app
    logs to stdout), from any thread, even after a check reconfigures logging. The stream
    returned is the real stdout, for the report alone, so `--json | jq` always gets JSON. Not
    undone: the command is one-shot, and a check that ran out of time may still log."""
    sys.stdout.flush()
    report = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(report, "w", encoding="utf-8")
