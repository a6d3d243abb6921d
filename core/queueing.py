"""Queueing Celery tasks from code that has already committed its change.

A task queued after commit (transaction.on_commit) must not turn a broker outage into an error
for a change that is already saved: a 500 for an order that was in fact booked, a refund that
was in fact recorded. `queue_task` logs a warning instead, and every caller names the periodic
job that picks the work up once Redis is back (the dispatch sweep, the payments reconciler).
"""

import logging

import kombu.exceptions
import redis.exceptions

logger = logging.getLogger(__name__)

# What publishing a task raises when the broker is down or hangs (kombu wraps the transport's
# connection errors once its publish retries are used up).
BROKER_ERRORS = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def queue_task(task, *args, recovered_by: str, **options) -> bool:
    """task.apply_async(args, **options); False (and a warning) when the broker is unavailable.

    `recovered_by` says which periodic job does the work if this one is never queued.
    """
    try:
        task.apply_async(args=args, **options)
    except BROKER_ERRORS as error:
        logger.warning(
            "%s%s not queued, broker unavailable (%s: %s); %s will pick it up",
            task.name,
            list(args),
            type(error).__name__,
            error,
            recovered_by,
        )
        return False
    return True
