"""Riders: the profile ops approve, where each rider was last seen, and the trail behind it."""

from django.conf import settings
from django.contrib.gis.db import models as gis_models
from django.db import models

from core.models import PublicModel


class Rider(PublicModel):
    class VehicleType(models.TextChoices):
        BICYCLE = "bicycle", "Bicycle"
        SCOOTER = "scooter", "Scooter"
        MOTORCYCLE = "motorcycle", "Motorcycle"
        EV_SCOOTER = "ev_scooter", "Electric scooter"

    class Status(models.TextChoices):
        OFFLINE = "offline", "Offline"
        ONLINE = "online", "Online"
        ON_DELIVERY = "on_delivery", "On delivery"
        SUSPENDED = "suspended", "Suspended"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rider"
    )
    vehicle_type = models.CharField(
        max_length=16, choices=VehicleType.choices, default=VehicleType.MOTORCYCLE
    )
    vehicle_number = models.CharField(max_length=20, blank=True)
    approved = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OFFLINE)
    # Latest position only; geography so distances come out in metres. GiST-indexed for KNN.
    last_location = gis_models.PointField(geography=True, srid=4326, null=True, blank=True)
    last_location_at = models.DateTimeField(
        null=True, blank=True, help_text="When the device took that fix (its recorded_at)."
    )
    # When status last changed. The idle sweep counts silence from here too, so a rider whose
    # last fix is from yesterday is not set offline the minute they come back online.
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "approved"], name="rider_status_approved")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_location__isnull=True, last_location_at__isnull=True)
                | models.Q(last_location__isnull=False, last_location_at__isnull=False),
                name="rider_location_has_time",
            ),
        ]

    def __str__(self):
        return f"{self.user.name or 'rider'} ({self.user.phone})"


class RiderLocation(models.Model):
    """One fix a rider's device sent: the trail behind Rider.last_location.

    Kept for RIDER_LOCATION_RETENTION_HOURS (riders.services.rider_location_purge, hourly). A
    fix is identified by its rider and recorded_at, so an app resending a fix it never got an
    acknowledgement for does not store it twice.
    """

    id = models.BigAutoField(primary_key=True)
    # Every ping inserts a row, so every index here costs each ping. The trail is read by rider
    # and time (the unique constraint's index below), never by place: no index of its own on
    # the rider, and no spatial index on the point.
    rider = models.ForeignKey(
        Rider, on_delete=models.CASCADE, related_name="locations", db_index=False
    )
    point = gis_models.PointField(geography=True, srid=4326, spatial_index=False)
    recorded_at = models.DateTimeField(help_text="When the device took the fix.")
    accuracy_m = models.FloatField(null=True, blank=True, help_text="Radius, metres.")
    heading = models.FloatField(null=True, blank=True, help_text="Degrees from north, 0-360.")
    speed_mps = models.FloatField(null=True, blank=True, help_text="Metres per second.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the server got it.")

    class Meta:
        ordering = ["rider", "-recorded_at"]
        constraints = [
            # Its unique index is also the (rider, recorded_at) index that reads a trail.
            models.UniqueConstraint(
                fields=["rider", "recorded_at"], name="rider_location_one_per_instant"
            ),
            models.CheckConstraint(
                condition=models.Q(accuracy_m__gte=0), name="rider_location_accuracy_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(heading__gte=0, heading__lte=360),
                name="rider_location_heading_in_degrees",
            ),
            models.CheckConstraint(
                condition=models.Q(speed_mps__gte=0), name="rider_location_speed_not_negative"
            ),
        ]

    def __str__(self):
        return f"{self.rider_id} at {self.recorded_at:%Y-%m-%d %H:%M:%S}"


class Earning(models.Model):
    """What a rider earned for one delivered order: written once, never changed.

    The unique order is the database's guarantee that a delivery pays exactly once, however
    many times the deliver request is retried or raced. `cash_collected_paise` is the cash the
    rider took from the customer on a cash-on-delivery order, which they owe back to ops.
    """

    id = models.BigAutoField(primary_key=True)
    rider = models.ForeignKey(Rider, on_delete=models.PROTECT, related_name="earnings")
    order = models.OneToOneField("orders.Order", on_delete=models.PROTECT, related_name="earning")
    amount_paise = models.PositiveIntegerField()
    cash_collected_paise = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["rider", "-created_at"], name="earning_rider_newest")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_paise__gt=0), name="earning_amount_positive"
            ),
        ]

    def __str__(self):
        return f"{self.amount_paise} paise to {self.rider_id} for {self.order_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Earnings are immutable; record a new entry instead.")
        super().save(*args, **kwargs)
