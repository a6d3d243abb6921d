"""A real worker process on the real Redis broker: dead letters, request ids, DB connections.

Proves that:
- a task that keeps failing is retried by Celery, then recorded ONCE in the dead-letter table
  (task_failure fires only on the final failure) with its name, arguments, error, queue and
  request id, and the admin's "Retry selected tasks" action sends it again and it runs;
- a task killed at its hard time limit is dead-lettered too, once (Celery 5.7 fires
  task_failure twice for it, from the main process), and the worker goes on working (the
  next tests run in the replacement pool process);
- the X-Request-ID of an API call that queues a task is on the task's log lines, which the
  worker writes as JSON to its stdout;
- each task gets a fresh PostgreSQL connection and the previous one is really closed.
"""

import itertools
import time
import uuid

import pytest
from django.contrib import admin
from django.db import connection, transaction
from django.test import override_settings
from django.urls import path
from django_guid import clear_guid, set_guid
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from core.models import DeadLetter
from core.tests.celery_tasks import (
    database_backend_pid,
    fail_until_switched_on,
    log_marker,
    outlive_hard_time_limit,
    pool_process_pid,
    stop_cleanly_at_soft_time_limit,
)
from devstack.celery import flush_broker, start_worker
from devstack.wait import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class QueueMarkerApi(APIView):
    """Stands in for any API that queues a task after its transaction commits."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request):
        marker = str(request.data["marker"])
        transaction.on_commit(lambda: log_marker.delay(marker))
        return Response(status=status.HTTP_202_ACCEPTED)


urlpatterns = [
    path("queue-marker/", QueueMarkerApi.as_view()),
    path("admin/", admin.site.urls),
]


@pytest.fixture(scope="module")
def worker(celery_tables, tmp_path_factory):
    flush_broker()
    worker = start_worker(tmp_path_factory.mktemp("worker"), REMAP_SIGTERM="SIGQUIT")
    yield worker
    worker.close()


def _count(sql: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _attempts(key: str) -> int:
    return _count("SELECT count(*) FROM celery_test_attempt WHERE key = %s", [key])


def _effects(key: str) -> int:
    return _count("SELECT count(*) FROM celery_test_effect WHERE key = %s", [key])


@pytest.mark.checklist("P6.21", "P5.15", "P9.17", "P9.18")
@override_settings(ROOT_URLCONF=__name__)
def test_a_task_failing_after_its_retries_is_dead_lettered_once_and_an_admin_retry_runs_it(
    worker, client
):
    # given a task whose downstream is down, queued on "low" during a request with an id
    key = f"dead-{uuid.uuid4().hex}"
    request_id = str(uuid.uuid4())
    set_guid(request_id)
    try:
        result = fail_until_switched_on.apply_async(args=[key], queue="low")
    finally:
        clear_guid()

    # when the worker has run it and Celery has retried it twice
    letter = wait_for(
        lambda: DeadLetter.objects.filter(task_id=result.id).first(), 20, "the dead letter"
    )
    time.sleep(1.0)  # room for any further (wrong) dead letter or retry to show up

    # then it was tried 1 + max_retries times and recorded once, after the last try
    assert _attempts(key) == 3
    assert DeadLetter.objects.filter(task_name=fail_until_switched_on.name).count() == 1
    assert worker.output().count(f"{result.id}] retry: Retry in") == 2
    assert letter.task_name == "core.tests.celery_tasks.fail_until_switched_on"
    assert letter.args == [key]
    assert letter.kwargs == {}
    assert letter.exception_type == "builtins.ConnectionError"
    assert letter.exception_message == f"downstream for {key} is down"
    assert "ConnectionError" in letter.traceback
    assert letter.request_id == request_id
    assert letter.queue == "low"
    assert letter.retries == 2
    assert letter.status == DeadLetter.Status.OPEN
    assert _effects(key) == 0

    # when the downstream is back and ops retry it from the admin
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO celery_test_switch (key) VALUES (%s)", [key])
    staff = User.objects.create_superuser("+919000000042", password="not-used-here")
    client.force_login(staff)
    response = client.post(
        "/admin/core/deadletter/",
        {"action": "retry_selected", "_selected_action": [str(letter.pk)]},
    )

    # then the row is marked retried and the task runs again, with its stored arguments
    assert response.status_code == 302
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RETRIED
    assert letter.retried_at is not None
    assert letter.retry_task_id and letter.retry_task_id != result.id
    wait_for(lambda: _effects(key) == 1, 15, "the retried task's effect")
    assert _attempts(key) == 4
    worker.wait_for_output(f"{letter.retry_task_id}] succeeded", 5)
    assert DeadLetter.objects.count() == 1  # the successful rerun left no new dead letter


@pytest.mark.checklist("P6.21", "P5.7", "P5.15", "P9.21")
def test_a_task_killed_at_its_hard_time_limit_is_dead_lettered(worker):
    # given a task that runs past its hard time limit
    key = f"limit-{uuid.uuid4().hex}"
    result = outlive_hard_time_limit.delay(key)

    # when the worker kills it at the limit
    letter = wait_for(
        lambda: DeadLetter.objects.filter(task_id=result.id).first(), 20, "the dead letter"
    )

    # then it is recorded once (Celery 5.7 reports this failure twice) and not run again
    assert "Hard time limit (2s) exceeded" in worker.output()
    time.sleep(1.0)
    assert DeadLetter.objects.filter(task_id=result.id).count() == 1
    assert _attempts(key) == 1
    assert letter.task_name == "core.tests.celery_tasks.outlive_hard_time_limit"
    assert letter.exception_type.endswith("TimeLimitExceeded")
    assert letter.args == [key]
    assert letter.queue == "default"
    assert letter.retries == 0


@pytest.mark.checklist("P5.8")
def test_a_task_past_its_soft_time_limit_is_told_and_can_stop_cleanly(worker):
    # given a task that handles its soft time limit (1 s here; 3000 s by default)
    key = f"soft-{uuid.uuid4().hex}"

    # when it runs past it
    result = stop_cleanly_at_soft_time_limit.delay(key)

    # then it is interrupted at the soft limit, long before the hard one, and ends as it chose
    assert result.get(timeout=8) == "stopped at the soft limit"
    assert _attempts(key) == 1


@pytest.mark.checklist("P5.9")
def test_a_pool_process_is_replaced_after_its_hundred_tasks(worker):
    # when the one-process pool runs 101 tasks in a row
    pids = [pool_process_pid.delay().get(timeout=10) for _ in range(101)]

    # then no process ran more than 100 of them: a new one took over (memory-leak prevention)
    runs = [len(list(group)) for _, group in itertools.groupby(pids)]
    assert len(runs) >= 2, runs
    assert max(runs) <= 100, runs


@pytest.mark.checklist("P6.2", "P6.6", "P5.19")
@override_settings(ROOT_URLCONF=__name__)
def test_the_request_id_of_an_api_call_is_on_the_log_lines_of_the_task_it_queued(
    worker, api_client
):
    # given an API call with its own request id
    request_id = str(uuid.uuid4())
    marker = uuid.uuid4().hex

    # when it queues a task
    response = api_client.post(
        "/queue-marker/", {"marker": marker}, format="json", HTTP_X_REQUEST_ID=request_id
    )
    assert response.status_code == 202
    assert response["X-Request-ID"] == request_id

    # then the worker's JSON log line written by the task carries that request id
    worker.wait_for_output(f"marker {marker}", 15)
    task_line = next(line for line in worker.json_lines() if line["message"] == f"marker {marker}")
    assert task_line["request_id"] == request_id
    assert task_line["logger"] == "core.tests.celery_tasks"
    # and so does Celery's own line for the task's outcome, written in the same pool process
    (task_id,) = {
        line["data"]["id"]
        for line in worker.json_lines()
        if line["message"].endswith("received") and marker in line["data"]["args"]
    }
    worker.wait_for_output(f"{task_id}] succeeded", 5)
    outcome = next(
        line for line in worker.json_lines() if f"[{task_id}] succeeded" in line["message"]
    )
    assert outcome["request_id"] == request_id


@pytest.mark.checklist("P5.20")
def test_each_task_gets_a_fresh_database_connection_and_the_last_one_is_closed(worker):
    # when the same pool process runs two tasks, one after the other
    first = database_backend_pid.delay().get(timeout=15)

    # then the first task's PostgreSQL session is gone once it has finished
    wait_for(
        lambda: (
            not _count(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [first["backend_pid"]]
            )
        ),
        5,
        "the first task's connection to close",
    )
    second = database_backend_pid.delay().get(timeout=15)

    # and the second task opened a new one, in the same process (not a recycled child)
    assert second["pid"] == first["pid"]
    assert second["backend_pid"] != first["backend_pid"]
