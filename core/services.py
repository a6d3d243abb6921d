"""Writes owned by core: recording Celery dead letters and sending them again."""

import logging
import traceback as traceback_module
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.metrics import DEAD_LETTERS_RECORDED
from core.models import DeadLetter

logger = logging.getLogger(__name__)


def _max(field: str) -> int:
    """DeadLetter's column limit: longer values are cut rather than lose the whole record."""
    return DeadLetter._meta.get_field(field).max_length


def dead_letter_record(
    *,
    task_name: str,
    task_id: str,
    args: Any,
    kwargs: Any,
    exception: BaseException,
    traceback: str,
    request_id: str,
    queue: str,
    retries: int,
) -> DeadLetter | None:
    """Stores one final task failure; returns None if this task id is already recorded.

    Arguments are stored as sent (JSON only, see config/celery.py).
    """
    exception_type = type(exception)
    fields = dict(
        task_name=task_name[: _max("task_name")],
        task_id=(task_id or "")[: _max("task_id")],
        args=list(args or []),
        kwargs=dict(kwargs or {}),
        exception_type=f"{exception_type.__module__}.{exception_type.__qualname__}"[
            : _max("exception_type")
        ],
        exception_message=str(exception),
        traceback=traceback
        or "".join(traceback_module.format_exception(exception_type, exception, None)),
        request_id=(request_id or "")[: _max("request_id")],
        queue=(queue or "")[: _max("queue")],
        retries=max(0, int(retries or 0)),
    )
    try:
        with transaction.atomic():
            letter = DeadLetter.objects.create(**fields)
    except IntegrityError:
        if DeadLetter.objects.filter(task_id=fields["task_id"]).exists():
            return None  # the same failure reported a second time
        raise
    DEAD_LETTERS_RECORDED.labels(task=task_name).inc()
    return letter


class DeadLetterNotOpen(Exception):
    """Only an open dead letter can be retried; a retried one failing again is a new row."""


def dead_letter_retry(*, dead_letter_id) -> DeadLetter:
    """Sends the task again by name, with its stored arguments, to the queue it failed on.

    The message is published inside the transaction that marks the row retried: if the broker
    refuses it, the row stays open; if the commit fails after the send, the task may be sent
    twice on a later retry, which idempotent tasks (STYLE.md rule 4) absorb. The reverse order
    could mark a row retried that was never sent.
    """
    from config.celery import app

    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=dead_letter_id)
        if letter.status != DeadLetter.Status.OPEN:
            raise DeadLetterNotOpen(f"dead letter {letter.pk} is {letter.status}, not open")
        options = {"queue": letter.queue} if letter.queue else {}
        result = app.send_task(letter.task_name, args=letter.args, kwargs=letter.kwargs, **options)
        letter.status = DeadLetter.Status.RETRIED
        letter.retried_at = timezone.now()
        letter.retry_task_id = result.id
        letter.save(update_fields=["status", "retried_at", "retry_task_id", "updated_at"])
    logger.info(
        "dead letter %s retried: task %s sent again as %s (original request id %s)",
        letter.pk,
        letter.task_name,
        result.id,
        letter.request_id or "-",
    )
    return letter


def dead_letter_resolve(*, dead_letter_id) -> DeadLetter:
    """Ops handled it another way; the row stays for the record."""
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=dead_letter_id)
        letter.status = DeadLetter.Status.RESOLVED
        letter.save(update_fields=["status", "updated_at"])
    return letter
