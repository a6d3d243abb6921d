"""Per-customer limits on quoting and booking, counted in the default cache by account."""

from accounts.throttles import FailClosedRateThrottle


class CustomerRateThrottle(FailClosedRateThrottle):
    """Keyed by the signed-in account: a new address does not buy a new allowance."""

    def get_cache_key(self, request, view) -> str | None:
        if not request.user.is_authenticated:
            return None  # the view refuses it anyway
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class QuoteThrottle(CustomerRateThrottle):
    scope = "quote_customer"


class OrderCreateThrottle(CustomerRateThrottle):
    scope = "order_customer"
