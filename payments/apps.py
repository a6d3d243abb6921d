from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        from orders import state
        from payments.services.refunds import payments_lock_before_cancel, refund_on_cancel

        # A cancel locks the order's payments before the order, and refunds what was captured.
        state.on_transition_locking(payments_lock_before_cancel, locks_rows="payment")
        state.on_transition_locked(refund_on_cancel, locks_rows=None)
