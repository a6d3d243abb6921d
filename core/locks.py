"""The project's lock order: a transaction that locks rows of several kinds takes them in this
order, so two transactions never wait on each other in a circle.

- webhook_event: a Razorpay webhook event's row, while it is applied;
- payment: a payment's rows (by primary key), before its order (payments mark an order paid;
  a cancel locks them through its hook before the order, and refunds);
- order: the order row (orders.state.order_transition, the one writer of its status);
- refund: a refund's row, while its answer from Razorpay is recorded;
- offer: the order's offers (delivery withdraws or settles them when the order moves);
- rider: the rider row (riders take and leave deliveries).

orders.state runs the hooks other apps register before and inside an order's lock in this
order; core/tests/test_lock_order.py watches the services' transactions keep it.
"""

LOCK_ORDER = ("webhook_event", "payment", "order", "refund", "offer", "rider")


def position(kind: str) -> int:
    """Where a kind of row comes in the lock order; ValueError for a kind it does not name."""
    return LOCK_ORDER.index(kind)
