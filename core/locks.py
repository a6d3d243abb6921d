"""The project's lock order: a transaction that locks rows of several kinds takes them in this
order, so two transactions never wait on each other in a circle.

- payment: a payment's rows, before its order (payments.services marks an order paid);
- order: the order row (orders.state.order_transition, the one writer of its status);
- offer: the order's offers (delivery withdraws or settles them when the order moves);
- rider: the rider row (riders take and leave deliveries).

orders.state runs the hooks other apps register inside an order's lock in this order.
"""

LOCK_ORDER = ("payment", "order", "offer", "rider")


def position(kind: str) -> int:
    """Where a kind of row comes in the lock order; ValueError for a kind it does not name."""
    return LOCK_ORDER.index(kind)
