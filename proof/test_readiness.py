"""`manage.py readiness --json` against the whole stack, deployed as production runs it.

A stack of its own (devstack/stack.py: gunicorn with uvicorn workers, a Celery worker and beat, a
Redis of its own, the test database), with what the shared stack of the other proof tests
leaves out on purpose put back: SSL redirect on (the report's own request comes through the
TLS proxy's header, as a platform's would), static files collected as the image build does,
and workers recycled after GUNICORN_MAX_REQUESTS. Every line the report checks must PASS; only
the lines about this project's container image are skipped, since the stack runs from the
source tree.
"""

import json

import pytest

from devstack.celery import beat_heartbeat_recorded
from devstack.commands import collect_static, run_manage
from devstack.stack import start_stack
from devstack.wait import wait_for
from readiness import live_ids

IMAGE_LINES = {"P2.6", "P2.7", "P2.8", "P2.9", "P10.15"}


@pytest.fixture(scope="module")
def deployed(django_db_setup, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("readiness-stack")
    stack = start_stack(
        work_dir,
        SECURE_SSL_REDIRECT=None,  # production's default: on
        STATIC_ROOT=str(collect_static(work_dir / "static")),
    )
    yield stack
    stack.stop()


@pytest.mark.checklist("P11.16")
@pytest.mark.checklist("P11.14", "P11.15", configured=True)
def test_the_deployed_stack_passes_every_line_checked_live(deployed):
    # given beat's first heartbeat (queued when beat starts, recorded by the worker)
    wait_for(lambda: beat_heartbeat_recorded(deployed.redis.url), 90, "beat's first heartbeat")

    # when
    result = run_manage(
        "readiness", "--json", "--url", deployed.base_url, env=deployed.env, timeout=120
    )

    # then every line it checks passes, but the image's own, which it skips with a reason
    document = json.loads(result.stdout)
    lines = {line["id"]: line for line in document["results"]}
    assert set(lines) == live_ids()
    failed = {i: line["detail"] for i, line in lines.items() if line["status"] == "FAIL"}
    assert not failed, json.dumps(failed, indent=1)
    skipped = {i: line["detail"] for i, line in lines.items() if line["status"] == "SKIP"}
    assert set(skipped) <= IMAGE_LINES and all(skipped.values()), skipped
    assert document["summary"] == {
        "pass": len(lines) - len(skipped),
        "fail": 0,
        "skip": len(skipped),
    }
    assert result.returncode == 0, result.stderr
