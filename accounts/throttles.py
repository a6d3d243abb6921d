"""Per-phone and per-IP throttles on the OTP endpoints, counted in the default cache."""

import hashlib
import logging

import redis.exceptions
from django.core.exceptions import ImproperlyConfigured, ValidationError
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from accounts.phone import normalize_phone

logger = logging.getLogger(__name__)

_CACHE_ERRORS = (redis.exceptions.RedisError, OSError)


class FailClosedRateThrottle(SimpleRateThrottle):
    """A scoped throttle that refuses, rather than waves through, when its cache fails.

    The default cache already falls back to process memory while Redis is down, so this only
    matters if a backend ever raises. Rates are read per request, not frozen at import
    (DRF's SimpleRateThrottle.THROTTLE_RATES is), so settings overrides take effect.
    """

    def get_rate(self) -> str:
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError:
            raise ImproperlyConfigured(f"No throttle rate set for scope {self.scope!r}.") from None

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except _CACHE_ERRORS as error:
            logger.error("throttle %s refused a request: cache failed (%r)", self.scope, error)
            self.history = []
            return False


class PhoneRateThrottle(FailClosedRateThrottle):
    """Keyed by the phone number in the body, normalised so "98123 45678" counts as +91..."""

    def get_cache_key(self, request, view) -> str | None:
        raw = request.data.get("phone") if hasattr(request.data, "get") else None
        if not isinstance(raw, str) or not raw.strip():
            return None  # the IP throttle still applies, and the view answers 400
        try:
            phone = normalize_phone(raw)
        except ValidationError:
            phone = raw.strip()[:32]
        # Hashed: throttle keys in Redis should not be a list of customers' phone numbers.
        # surrogatepass: JSON may carry a lone surrogate ("\ud800"), which UTF-8 cannot encode.
        ident = hashlib.sha256(phone.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": ident}


class IpRateThrottle(FailClosedRateThrottle):
    """Keyed by the client address (REMOTE_ADDR; NUM_PROXIES=0, see settings)."""

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class OtpRequestPhoneThrottle(PhoneRateThrottle):
    scope = "otp_request_phone"


class OtpRequestIpThrottle(IpRateThrottle):
    scope = "otp_request_ip"


class OtpVerifyPhoneThrottle(PhoneRateThrottle):
    scope = "otp_verify_phone"


class OtpVerifyIpThrottle(IpRateThrottle):
    scope = "otp_verify_ip"
