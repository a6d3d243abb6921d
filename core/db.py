"""Database work called from async code: the sockets' consumers and the async views."""

from channels.db import database_sync_to_async


def database_call(func):
    """`func` for async callers, run in a thread of the event loop's pool.

    database_sync_to_async closes old connections before and after the call, so a pooled
    connection goes back to the pool when it returns. Not thread-sensitive: asgiref runs every
    thread-sensitive call made outside a request (every socket's) in one thread per process,
    where they queue behind each other and behind any slow call. The functions wrapped here are
    self-contained (their own transaction), so any thread will do.
    """
    return database_sync_to_async(func, thread_sensitive=False)
