from django.apps import AppConfig


class RidersConfig(AppConfig):
    name = "riders"
    verbose_name = "Riders"

    def ready(self):
        from core import purges
        from orders import state
        from riders.services import rider_follows_transition, rider_location_purge

        purges.register("rider location points", rider_location_purge)
        state.on_transition_locked(rider_follows_transition, locks_rows="rider")
