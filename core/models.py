"""Shared model bases: timestamps on everything, UUID ids on everything that is public."""

import uuid

from django.db import models


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class PublicModel(TimestampedModel):
    """A row that clients may refer to: its id is a UUID, never a guessable counter."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    class Meta:
        abstract = True


class DeadLetter(PublicModel):
    """A Celery task that still failed after its retries, kept so ops can see it and rerun it.

    Written by the `task_failure` handler in config/celery.py (core.services.dead_letter_record);
    rerun from the admin (core.services.dead_letter_retry). A rerun that fails again is recorded
    as a new row, so each row is one final failure.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RETRIED = "retried", "Retried"
        RESOLVED = "resolved", "Resolved"

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    exception_type = models.CharField(max_length=200)
    exception_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    request_id = models.CharField(
        max_length=200, blank=True, db_index=True, help_text="X-Request-ID of the web request."
    )
    queue = models.CharField(max_length=64, blank=True)
    retries = models.PositiveSmallIntegerField(default=0, help_text="Retries before giving up.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    retried_at = models.DateTimeField(null=True, blank=True)
    retry_task_id = models.CharField(
        max_length=64, blank=True, help_text="Id of the task sent by the last retry."
    )

    class Meta:
        ordering = ["-created_at"]
        # Not about dead letters: core's one model carries core's permissions.
        permissions = [("view_readiness_report", "Can read the live readiness report")]
        indexes = [models.Index(fields=["status", "task_name"], name="dead_letter_status_task")]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="retried") | models.Q(retried_at__isnull=False),
                name="dead_letter_retried_has_time",
            ),
            # Celery 5.7 sends task_failure twice for a hard time limit (Request.on_failure,
            # then Request.on_timeout); a retry from the admin gets a new task id.
            models.UniqueConstraint(fields=["task_id"], name="dead_letter_one_per_task"),
        ]

    def __str__(self):
        return f"{self.task_name} [{self.task_id}] {self.status}"
