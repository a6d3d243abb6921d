"""Starts nothing: the poll every launcher waits with, until a process answers or a log line
appears."""

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval=0.1):
    """Polls until `condition()` is truthy and returns its value; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
