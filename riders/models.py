"""Riders: the profile ops approve, and where each rider was last seen."""

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
    last_location_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "approved"], name="rider_status_approved")]

    def __str__(self):
        return f"{self.user.name or 'rider'} ({self.user.phone})"
