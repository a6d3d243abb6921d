"""Razorpay payments of orders, their refunds, and the webhook events Razorpay sent us."""

from django.db import models
from django.db.models import Q

from core.models import PublicModel, TimestampedModel


class Payment(PublicModel):
    """One Razorpay order made for one of our orders (a customer may need more than one try).

    `razorpay_payment_id` is the capture that settled it; it is filled by the one locked
    `payments.services.checkout.mark_paid`.
    """

    class Status(models.TextChoices):
        CREATED = "created", "Created (awaiting the customer)"
        CAPTURED = "captured", "Captured"
        FAILED = "failed", "Failed"
        MISMATCH = "mismatch", "Refused: amount or currency mismatch"

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="payments")
    razorpay_order_id = models.CharField(max_length=64, unique=True)
    razorpay_payment_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    amount_paise = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    captured_at = models.DateTimeField(null=True, blank=True)
    captured_by = models.CharField(
        max_length=16, blank=True, help_text="verify, webhook or reconciler: who settled it."
    )
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="payment_status_created")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="captured")
                | (Q(razorpay_payment_id__isnull=False) & Q(captured_at__isnull=False)),
                name="payment_captured_has_payment_id",
            )
        ]

    def __str__(self):
        return f"{self.razorpay_order_id} ({self.status})"


class Refund(PublicModel):
    """Money sent back for one captured Razorpay payment.

    `idempotency_key` travels as X-Refund-Idempotency on every attempt, so a retried request
    never refunds twice.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (not yet accepted by Razorpay)"
        SUBMITTED = "submitted", "Accepted by Razorpay, in progress"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    razorpay_payment_id = models.CharField(max_length=64, help_text="The capture refunded.")
    idempotency_key = models.CharField(max_length=64, unique=True)
    amount_paise = models.PositiveIntegerField()
    reason = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    razorpay_refund_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_paise__gt=0), name="refund_amount_positive"),
            # A capture is refunded at most once (we only make full refunds).
            models.UniqueConstraint(
                fields=["razorpay_payment_id"],
                condition=~Q(status="failed"),
                name="refund_one_live_per_capture",
            ),
        ]

    def __str__(self):
        return f"Refund of {self.razorpay_payment_id} ({self.status})"


class WebhookEvent(TimestampedModel):
    """A webhook delivery, stored before it is processed; the event id makes redelivery a no-op."""

    event_id = models.CharField(max_length=100, unique=True, help_text="X-Razorpay-Event-Id.")
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.event_type} {self.event_id}"
