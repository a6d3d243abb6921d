"""detect-secrets plugins for keys its built-in detectors do not know."""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class RazorpayLiveKeyDetector(RegexBasedDetector):
    """Razorpay live key ids (test keys, rzp_test_..., move no money and are not flagged)."""

    secret_type = "Razorpay live key"  # pragma: allowlist secret
    denylist = (re.compile(r"\brzp_live_[A-Za-z0-9]{10,}\b"),)
