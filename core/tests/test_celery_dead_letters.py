"""Dead letters without a worker: the retry really publishes, the metrics really count.

Proves that:
- retrying a dead letter publishes the stored task, arguments and queue to the real broker,
  marks the row retried, and refuses a row that is not open;
- the admin lists, filters and searches dead letters, shows them read-only, adds none, and
  its retry action skips rows that are not open;
- /metrics (core.metrics.metrics_view) reports the open dead letters per task read from the
  table, in single-process and in gunicorn's multiprocess mode, while the per-process counter
  counts what this process recorded.
The full path (a worker fails a task, the admin retries it, it runs) is in test_celery_worker.
"""

import base64
import json
import uuid

import pytest
from django.contrib import admin
from django.test import RequestFactory, override_settings
from django.urls import path
from prometheus_client import REGISTRY

from accounts.models import User
from core.metrics import metrics_view
from core.models import DeadLetter
from core.services import DeadLetterNotOpen, dead_letter_record, dead_letter_retry
from devstack.celery import flush_broker, redis_client

pytestmark = pytest.mark.django_db

urlpatterns = [path("admin/", admin.site.urls)]


def _letter(task_name="core.tests.celery_tasks.log_marker", **fields) -> DeadLetter:
    defaults = {
        "task_id": uuid.uuid4().hex,
        "args": ["hello"],
        "kwargs": {},
        "exception_type": "builtins.ConnectionError",
        "queue": "low",
    }
    return DeadLetter.objects.create(task_name=task_name, **{**defaults, **fields})


def _metrics_text() -> str:
    return metrics_view(RequestFactory().get("/metrics")).content.decode()


@pytest.mark.checklist("P5.15", "P9.18")
def test_retrying_a_dead_letter_publishes_its_task_to_its_queue():
    # given a dead letter of a task that failed on the "low" queue
    flush_broker()
    letter = _letter(args=["hello"], kwargs={"loud": True})

    # when it is retried
    dead_letter_retry(dead_letter_id=letter.pk)

    # then the same task with the same arguments waits on "low" under a new task id
    broker = redis_client()
    assert broker.llen("low") == 1
    message = json.loads(broker.lindex("low", 0))
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert message["headers"]["task"] == "core.tests.celery_tasks.log_marker"
    assert (args, kwargs) == (["hello"], {"loud": True})
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RETRIED
    assert letter.retried_at is not None
    assert message["headers"]["id"] == letter.retry_task_id != letter.task_id

    # and a second retry of the same row is refused: a failed rerun is a new dead letter
    with pytest.raises(DeadLetterNotOpen):
        dead_letter_retry(dead_letter_id=letter.pk)
    assert broker.llen("low") == 1


def test_metrics_report_open_dead_letters_per_task_from_the_table():
    _letter(task_name="payments.tasks.reconcile_pending_payments")
    _letter(task_name="payments.tasks.reconcile_pending_payments")
    _letter(task_name="payments.tasks.reconcile_pending_payments", status="resolved")
    _letter(task_name="riders.tasks.set_idle_riders_offline")

    text = _metrics_text()

    assert 'delivery_dead_letters_open{task="payments.tasks.reconcile_pending_payments"} 2.0' in (
        text
    )
    assert 'delivery_dead_letters_open{task="riders.tasks.set_idle_riders_offline"} 1.0' in text


def test_metrics_include_the_table_gauge_under_gunicorn_multiprocess_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _letter(task_name="core.tasks.beat_heartbeat")

    assert 'delivery_dead_letters_open{task="core.tasks.beat_heartbeat"} 1.0' in _metrics_text()


@pytest.mark.checklist("P6.21")
def test_recording_a_dead_letter_counts_it_in_this_process_and_only_once_per_task_id():
    labels = {"task": "core.tests.celery_tasks.log_marker"}
    before = REGISTRY.get_sample_value("celery_dead_letters_total", labels) or 0

    def record():
        return dead_letter_record(
            task_name="core.tests.celery_tasks.log_marker",
            task_id="abc",
            args=("x",),
            kwargs=None,
            exception=ValueError("bad"),
            traceback="",
            request_id="",
            queue="default",
            retries=3,
        )

    letter = record()
    again = record()  # as Celery does for a hard time limit

    assert again is None
    assert DeadLetter.objects.count() == 1
    assert REGISTRY.get_sample_value("celery_dead_letters_total", labels) == before + 1
    assert letter.args == ["x"]
    assert letter.kwargs == {}
    assert letter.exception_type == "builtins.ValueError"
    assert "ValueError: bad" in letter.traceback


@override_settings(ROOT_URLCONF=__name__)
def test_the_admin_lists_searches_and_shows_dead_letters_read_only(client):
    # given
    client.force_login(User.objects.create_superuser("+919000000043", password="unused"))
    wanted = _letter(task_name="payments.tasks.reconcile_pending_payments", request_id="req-42")
    _letter(task_name="riders.tasks.set_idle_riders_offline")

    # when / then: search by request id finds only its row
    listing = client.get("/admin/core/deadletter/", {"q": "req-42"})
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == [wanted]
    # filters by status and task
    filtered = client.get("/admin/core/deadletter/", {"status__exact": "open"})
    assert filtered.context["cl"].result_count == 2
    # the detail page shows every field and lets nobody edit one
    detail = client.get(f"/admin/core/deadletter/{wanted.pk}/change/")
    assert detail.status_code == 200
    assert "reconcile_pending_payments" in detail.content.decode()
    assert not detail.context["adminform"].form.fields
    # rows come from failed tasks only
    assert client.get("/admin/core/deadletter/add/").status_code == 403


@override_settings(ROOT_URLCONF=__name__)
def test_the_admin_retry_action_skips_rows_that_are_not_open(client):
    flush_broker()
    client.force_login(User.objects.create_superuser("+919000000044", password="unused"))
    resolved = _letter(status=DeadLetter.Status.RESOLVED)

    response = client.post(
        "/admin/core/deadletter/",
        {"action": "retry_selected", "_selected_action": [str(resolved.pk)]},
        follow=True,
    )

    assert "Skipped 1 not open" in response.content.decode()
    resolved.refresh_from_db()
    assert resolved.status == DeadLetter.Status.RESOLVED
    assert redis_client().llen("low") == 0
