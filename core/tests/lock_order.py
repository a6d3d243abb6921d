"""Watches the row locks a test's service calls take: within one service transaction, kinds of
row are locked in core.locks.LOCK_ORDER, never one that comes before a kind already locked.

The root conftest watches every test on the database that runs in a transaction of its own
(`django_db` without transaction=True, most of them); a service transaction is then a savepoint
at the test's depth, told apart by its id. A lock is read from the SQL: `FOR UPDATE` on a table
of core.locks' kinds.
"""

import contextlib
import re
from dataclasses import dataclass, field

from django.db import connection

from core import locks

KIND_OF_TABLE = {
    "payments_webhookevent": "webhook_event",
    "payments_payment": "payment",
    "orders_order": "order",
    "payments_refund": "refund",
    "delivery_offer": "offer",
    "riders_rider": "rider",
}
LOCKED_TABLE = re.compile(r'\bFROM "(\w+)"')


@dataclass
class LockWatch:
    base: int  # the test's own savepoints
    by_transaction: dict = field(default_factory=dict)  # savepoint id -> kinds, in lock order
    out_of_order: list[str] = field(default_factory=list)

    def __call__(self, execute, sql, params, many, context):
        if "FOR UPDATE" in sql and len(connection.savepoint_ids) > self.base:
            match = LOCKED_TABLE.search(sql)
            kind = KIND_OF_TABLE.get(match.group(1)) if match else None
            if kind is not None:
                self.record(connection.savepoint_ids[self.base], kind)
        return execute(sql, params, many, context)

    def record(self, transaction_id, kind: str) -> None:
        kinds = self.by_transaction.setdefault(transaction_id, [])
        # A kind already locked is not checked again: order_transition locks its caller's order
        # once more. (Kinds, not rows: two orders locked with an offer between are not seen.)
        later = [k for k in kinds if locks.position(k) > locks.position(kind)]
        if later and kind not in kinds:
            self.out_of_order.append(f"{kind} locked after {', '.join(dict.fromkeys(later))}")
        kinds.append(kind)


@contextlib.contextmanager
def watch_lock_order():
    """Yields the LockWatch of the service transactions run inside (in the test's transaction)."""
    watch = LockWatch(base=len(connection.savepoint_ids))
    with connection.execute_wrapper(watch):
        yield watch
