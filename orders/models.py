"""Orders and where they may be delivered."""

from django.contrib.gis.db import models as gis_models
from django.db import models

from core.models import TimestampedModel


class ServiceArea(TimestampedModel):
    """A zone ops serve; pickups and drops must fall inside an active one."""

    name = models.CharField(max_length=100, unique=True)
    area = gis_models.MultiPolygonField(srid=4326)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name
