"""The hourly clean-up's parts (core.tasks.purge_expired_records), registered by the apps that
own the rows in their AppConfig.ready(), so that core imports none of them."""

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_purges: dict[str, Callable[[], int]] = {}


def register(what: str, purge: Callable[[], int]) -> None:
    """`purge()` deletes expired `what` in bounded batches and returns how many."""
    _purges[what] = purge


def run_all() -> dict[str, int]:
    """Runs every registered purge; one that fails is logged and the others still run."""
    deleted = {}
    for what, purge in _purges.items():
        try:
            deleted[what] = purge()
        except Exception:
            logger.exception("purge of %s failed", what)
    return deleted
