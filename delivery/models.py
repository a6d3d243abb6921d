"""Dispatch records: the rounds in which an order was offered, and every offer with its outcome.

Offers live here rather than in riders because they are the dispatch engine's log of one
order's search; riders and orders are the two things an offer links.
"""

from django.db import models
from django.db.models import Q

from core.models import PublicModel, TimestampedModel


class DispatchRound(TimestampedModel):
    """One search for riders for one order; kept even when it found nobody (empty rounds widen
    the radius too)."""

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="+")
    number = models.PositiveSmallIntegerField(help_text="1 for the order's first round.")
    radius_m = models.PositiveIntegerField()
    offers_made = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "number"]
        constraints = [
            models.UniqueConstraint(fields=["order", "number"], name="dispatch_round_number_once")
        ]

    def __str__(self):
        return f"Round {self.number} of {self.order_id} ({self.offers_made} offers)"


class Offer(PublicModel):
    """An order offered to one rider for OFFER_TTL_SECONDS: who, when, and what came of it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"
        EXPIRED = "expired", "Expired"
        WITHDRAWN = "withdrawn", "Withdrawn"
        RELEASED = "released", "Released (accepted, then unassigned)"

    class Reason(models.TextChoices):
        """Why a pending offer was withdrawn."""

        TAKEN = "taken", "Another rider took the order"
        ASSIGNED_BY_OPS = "assigned_by_ops", "Ops assigned the order by hand"
        ORDER_CLOSED = "order_closed", "The order was cancelled or stopped searching"
        RIDER_UNAVAILABLE = "rider_unavailable", "The rider went offline or was suspended"

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="offers")
    rider = models.ForeignKey("riders.Rider", on_delete=models.PROTECT, related_name="offers")
    round_number = models.PositiveSmallIntegerField()
    distance_m = models.PositiveIntegerField(help_text="Rider to pickup when offered.")
    pay_paise = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField()
    responded_at = models.DateTimeField(null=True, blank=True)
    withdrawn_reason = models.CharField(max_length=20, choices=Reason.choices, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["rider", "status"], name="offer_rider_status"),
            models.Index(fields=["order", "status"], name="offer_order_status"),
            # The sweep's question: which pending offers have run out?
            models.Index(
                fields=["expires_at"], condition=Q(status="pending"), name="offer_pending_expiry"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "rider"],
                condition=Q(status="pending"),
                name="offer_one_pending_per_order_and_rider",
            ),
            # The last line of "exactly one rider wins": even a bug in the locking cannot
            # record two acceptances of one order.
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status="accepted"),
                name="offer_one_accepted_per_order",
            ),
        ]

    def __str__(self):
        return f"Offer of {self.order_id} to {self.rider_id} ({self.status})"
