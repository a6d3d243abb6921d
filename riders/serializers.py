"""The shapes a rider's location ping has on every transport (the HTTP view and the rider
socket read and answer with the same ones)."""

from django.utils import timezone
from rest_framework import serializers

from core.fields import FiniteFloatField


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time with its UTC offset: a phone's local time without one is ambiguous."""

    def enforce_timezone(self, value):
        if timezone.is_naive(value):
            raise serializers.ValidationError(
                "Include the UTC offset, e.g. 2026-01-31T10:15:00Z or 2026-01-31T15:45:00+05:30."
            )
        return super().enforce_timezone(value)


class RiderLocationInputSerializer(serializers.Serializer):
    lat = FiniteFloatField(min_value=-90, max_value=90)
    lng = FiniteFloatField(min_value=-180, max_value=180)
    recorded_at = AwareDateTimeField(help_text="When the device took the fix (ISO 8601).")
    accuracy_m = FiniteFloatField(min_value=0, required=False, allow_null=True)
    heading = FiniteFloatField(
        min_value=0, max_value=360, required=False, allow_null=True, help_text="Degrees."
    )
    speed_mps = FiniteFloatField(min_value=0, required=False, allow_null=True)


class RiderLocationOutputSerializer(serializers.Serializer):
    recorded_at = serializers.DateTimeField()
    latest = serializers.BooleanField(
        source="is_latest",
        help_text="False when a newer fix was already in: this one joined the trail only.",
    )


# One instance of each serves every ping: run_validation and to_representation keep no state
# between calls, as a nested serializer's do for each parent. Building them and deep-copying
# their fields for every ping cost about a tenth of a ping's CPU (py-spy, docs/performance.md).
_LOCATION_INPUT = RiderLocationInputSerializer()
_LOCATION_OUTPUT = RiderLocationOutputSerializer()


def location_input(data) -> dict:
    """A ping's fields, validated; raises ValidationError with DRF's per-field messages."""
    return _LOCATION_INPUT.run_validation(data)


def location_output(receipt) -> dict:
    return _LOCATION_OUTPUT.to_representation(receipt)
