"""Database work called from async code: the sockets' consumers and the async views."""

import asyncio
import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

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


def _copy_for_another_caller(error: BaseException) -> BaseException:
    """The same error (type, arguments, cause) as an object of its own.

    Each caller raises what it is handed, and raising an exception object prepends the
    raiser's frames to its traceback: callers sharing one object would each log the others'
    frames too. An error that cannot be copied is shared.
    """
    try:
        twin = copy.copy(error)
    except Exception:
        return error
    twin.__cause__, twin.__context__ = error.__cause__, error.__context__
    twin.__suppress_context__ = error.__suppress_context__
    return twin.with_traceback(error.__traceback__)


@dataclass
class _LoopBatches:
    waiting: list = field(default_factory=list)  # (item, future) not yet handed to a batch
    in_flight: int = 0
    flush_scheduled: bool = False
    tasks: set = field(default_factory=set)  # the loop holds tasks weakly


class GroupCommit:
    """Calls from one event loop gathered into batches, each stored by one database call.

    `store_batch(items)` runs through database_call and returns one entry per item, in order:
    the item's result, or the exception to raise to its caller. A call waits at most for the
    end of the event loop's current turn before its batch goes out, so a lone call is not
    delayed; under load, the calls that arrive while `max_in_flight` batches are being stored
    go out together in the next one (at most `max_size` to a batch). When the whole batch
    fails (the database is down), every caller in it gets that error (a copy of its own).

    Per-loop state: each event loop (a server worker's, or a test's) batches on its own.
    """

    def __init__(
        self, store_batch: Callable[[list], list], *, max_in_flight: int = 1, max_size: int = 64
    ):
        self.store_batch = database_call(store_batch)
        self.max_in_flight = max_in_flight
        self.max_size = max_size
        self._loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def __call__(self, item):
        loop = asyncio.get_running_loop()
        batches = self._loops.get(loop)
        if batches is None:
            batches = self._loops[loop] = _LoopBatches()
        future = loop.create_future()
        batches.waiting.append((item, future))
        self._flush_soon(loop, batches)
        return await future

    def _flush_soon(self, loop, batches: _LoopBatches) -> None:
        room = batches.in_flight < self.max_in_flight
        if batches.waiting and room and not batches.flush_scheduled:
            batches.flush_scheduled = True
            loop.call_soon(self._flush, loop, batches)

    def _flush(self, loop, batches: _LoopBatches) -> None:
        batches.flush_scheduled = False
        if not batches.waiting or batches.in_flight >= self.max_in_flight:
            return
        batch = batches.waiting[: self.max_size]
        del batches.waiting[: self.max_size]
        batches.in_flight += 1
        task = loop.create_task(self._store(loop, batches, batch))
        batches.tasks.add(task)
        task.add_done_callback(batches.tasks.discard)

    async def _store(self, loop, batches: _LoopBatches, batch: list) -> None:
        try:
            results = await self.store_batch([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except BaseException as error:  # handed to every caller of the batch, a copy each
            results = [error] + [_copy_for_another_caller(error) for _ in batch[1:]]
        finally:
            batches.in_flight -= 1
            self._flush_soon(loop, batches)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller went away (a client hung up)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
