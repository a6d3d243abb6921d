from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self):
        from delivery.services.dispatch import (
            dispatch_rematch_request,
            dispatch_when_searching,
            offers_follow_transition,
            offers_withdraw_from_unavailable_riders,
        )
        from orders import state
        from riders import services as riders

        state.on_transition_locked(offers_follow_transition, locks_rows="offer")
        state.on_transition_committed(dispatch_when_searching)
        riders.on_rider_free(dispatch_rematch_request)
        riders.on_riders_unavailable(offers_withdraw_from_unavailable_riders)
