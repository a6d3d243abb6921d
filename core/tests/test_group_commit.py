"""core.db.GroupCommit: calls from one event loop gathered into batches, each caller answered
with its own result or error. The store runs in a real pool thread (database_call); here it
notes each batch and can be held, so the tests decide what arrives while a batch is out."""

import asyncio
import threading
import traceback

import pytest

from core.db import GroupCommit


class Store:
    """A store_batch that notes each batch, answers item * 10, and waits while held."""

    def __init__(self, answer=lambda item: item * 10):
        self.answer = answer
        self.batches: list[list] = []
        self.released = threading.Event()
        self.released.set()

    def __call__(self, items):
        self.batches.append(list(items))
        assert self.released.wait(10), "the test never released the store"
        return [self.answer(item) for item in items]


async def until(condition) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def with_a_batch_out(commit: GroupCommit, store: Store, then):
    """Sends 1, holds its batch in the store, runs `then()` (which starts more calls), then
    releases the store; returns 1's result and then()'s."""
    store.released.clear()
    first = asyncio.ensure_future(commit(1))
    await until(lambda: store.batches)
    others = then()
    await asyncio.sleep(0.05)  # every call has queued
    store.released.set()
    return await first, await asyncio.gather(*others, return_exceptions=True)


def test_a_lone_call_goes_out_at_once_alone():
    store = Store()
    commit = GroupCommit(store)

    assert asyncio.run(commit(3)) == 30
    assert store.batches == [[3]]


def test_calls_arriving_while_a_batch_is_out_go_out_together():
    store = Store()
    commit = GroupCommit(store, max_in_flight=1)

    first, others = asyncio.run(
        with_a_batch_out(
            commit, store, lambda: [asyncio.ensure_future(commit(n)) for n in range(2, 7)]
        )
    )

    assert (first, others) == (10, [20, 30, 40, 50, 60])
    assert store.batches == [[1], [2, 3, 4, 5, 6]]


def test_batches_hold_at_most_max_size_calls():
    store = Store()
    commit = GroupCommit(store, max_in_flight=1, max_size=2)

    asyncio.run(
        with_a_batch_out(
            commit, store, lambda: [asyncio.ensure_future(commit(n)) for n in range(2, 7)]
        )
    )

    assert store.batches == [[1], [2, 3], [4, 5], [6]]


def test_up_to_max_in_flight_batches_are_out_at_once():
    store = Store()
    commit = GroupCommit(store, max_in_flight=2)

    async def run():
        store.released.clear()
        calls = [asyncio.ensure_future(commit(1))]
        await until(lambda: len(store.batches) == 1)
        calls.append(asyncio.ensure_future(commit(2)))
        await until(lambda: len(store.batches) == 2)  # a second batch went out meanwhile
        calls += [asyncio.ensure_future(commit(n)) for n in (3, 4)]
        await asyncio.sleep(0.05)
        out_while_held = [list(batch) for batch in store.batches]
        store.released.set()
        return out_while_held, await asyncio.gather(*calls)

    out_while_held, results = asyncio.run(run())

    assert out_while_held == [[1], [2]]
    assert results == [10, 20, 30, 40]
    assert store.batches == [[1], [2], [3, 4]]


def test_each_caller_gets_its_own_result_or_its_own_error():
    store = Store(answer=lambda item: ValueError(item) if item == 3 else item * 10)
    commit = GroupCommit(store, max_in_flight=1)

    first, others = asyncio.run(
        with_a_batch_out(
            commit, store, lambda: [asyncio.ensure_future(commit(n)) for n in (2, 3, 4)]
        )
    )

    assert store.batches == [[1], [2, 3, 4]]
    assert (first, others[0], others[2]) == (10, 20, 40)
    assert isinstance(others[1], ValueError) and others[1].args == (3,)


def test_a_failed_batch_fails_every_caller_in_it_and_the_next_batch_goes_out():
    failures = iter([ConnectionError("the database went away")])

    def store(items):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return [item * 10 for item in items]

    commit = GroupCommit(store)

    async def run():
        first = await asyncio.gather(commit(1), commit(2), return_exceptions=True)
        return first, await commit(3)

    first, later = asyncio.run(run())

    assert [type(result) for result in first] == [ConnectionError, ConnectionError]
    assert later == 30


def test_each_caller_of_a_failed_batch_raises_an_error_of_its_own_with_the_same_cause():
    # given a store that fails as Django does on a dead database: its error wraps the driver's
    class DriverError(Exception):
        pass

    def store(items):
        try:
            raise DriverError("server closed the connection")
        except DriverError as driver_error:
            raise ConnectionError("the database went away") from driver_error

    commit = GroupCommit(store)

    async def call_and_catch(item):
        try:
            await commit(item)
        except ConnectionError as error:
            return error

    async def run():
        return await asyncio.gather(*(call_and_catch(item) for item in range(3)))

    errors = asyncio.run(run())

    # then each caller caught its own object, alike in all that a handler reads
    assert len({id(error) for error in errors}) == 3
    assert {(type(error), error.args) for error in errors} == {
        (ConnectionError, ("the database went away",))
    }
    assert all(isinstance(error.__cause__, DriverError) for error in errors)
    # and each traceback holds its own caller's frame once, not the other callers' too
    for error in errors:
        frames = traceback.extract_tb(error.__traceback__)
        assert [frame.name for frame in frames].count("call_and_catch") == 1


def test_a_store_answering_the_wrong_number_of_results_fails_the_batch_instead_of_hanging():
    commit = GroupCommit(lambda items: items[:-1])

    async def run():
        return await asyncio.wait_for(
            asyncio.gather(commit(1), commit(2), return_exceptions=True), timeout=10
        )

    results = asyncio.run(run())

    assert [type(result) for result in results] == [RuntimeError, RuntimeError]


def test_a_caller_that_goes_away_leaves_the_others_their_answers():
    store = Store()
    commit = GroupCommit(store, max_in_flight=1)

    def then():
        calls = [asyncio.ensure_future(commit(n)) for n in (2, 3)]
        calls[0].cancel()
        return calls

    first, others = asyncio.run(with_a_batch_out(commit, store, then))

    assert first == 10
    assert isinstance(others[0], asyncio.CancelledError)
    assert others[1] == 30


@pytest.mark.parametrize("max_in_flight", [1, 2])
def test_many_calls_from_many_tasks_all_get_their_answers(max_in_flight):
    store = Store()
    commit = GroupCommit(store, max_in_flight=max_in_flight, max_size=7)

    async def run():
        return await asyncio.gather(*(commit(n) for n in range(100)))

    assert asyncio.run(run()) == [n * 10 for n in range(100)]
    assert sorted(item for batch in store.batches for item in batch) == list(range(100))
    assert all(len(batch) <= 7 for batch in store.batches)
    assert len(store.batches) < 100
