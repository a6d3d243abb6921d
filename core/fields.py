"""Serializer fields shared by the apps' APIs."""

import math

from rest_framework import serializers


class FiniteFloatField(serializers.FloatField):
    """NaN and infinity slip past min/max checks (and Python's json accepts them); refuse them."""

    def to_internal_value(self, data):
        if isinstance(data, bool):  # float(True) is 1.0: a JSON true is no coordinate
            self.fail("invalid")
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            raise serializers.ValidationError("A valid number is required.")
        return value
