"""The group commit's writers (api/group_commit.py) on a stand-in store: no request is
ever left waiting, whatever the timing of writers, failures and cancellation; a request is
answered once its batch commits, and a batch holds its writer until its rows are published."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import pytest

from api.group_commit import MAX_WRITERS, GroupCommit, Written
from contracts.errors import Unavailable


class Store:
    """Transactions that do nothing; `gate` holds every batch until it is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield None


class Publisher:
    async def publish(self, rows: Any) -> None:
        pass


class StalledBroker:
    """A publisher whose broker confirms nothing until `confirm` is set."""

    def __init__(self) -> None:
        self.confirm = asyncio.Event()
        self.published: list[str] = []

    async def publish(self, rows: list[str]) -> None:
        await self.confirm.wait()
        self.published += rows


class Answered(NamedTuple):
    """Stands in for the Operation a request is answered with."""

    id: str


def group_commit(store: Store, write: Any) -> GroupCommit[str]:
    return GroupCommit(store, Publisher(), lambda op: None, write)  # type: ignore[arg-type]


async def test_a_request_queued_as_every_writer_ends_is_still_written() -> None:
    """All writers finish in one loop step, and a request arrives in that same step."""
    store = Store()

    async def write(conn: None, batch: list[str]) -> Written:
        await store.gate.wait()
        done = Written()
        done.answers = {index: Answered(f"op-{name}") for index, name in enumerate(batch)}  # type: ignore[misc]
        return done

    commit = group_commit(store, write)
    first = []
    for n in range(MAX_WRITERS):
        first.append(asyncio.create_task(commit.submit(f"r{n}")))
        for _ in range(3):
            await asyncio.sleep(0)  # let each start its own writer
    store.gate.set()
    late = asyncio.create_task(commit.submit("late"))  # before the writers' ends are seen

    assert [op.id for op in await asyncio.gather(*first)] == [
        f"op-r{n}" for n in range(MAX_WRITERS)
    ]
    assert (await asyncio.wait_for(late, 2.0)).id == "op-late"


async def test_a_writer_cancelled_mid_batch_answers_its_requests() -> None:
    store = Store()

    async def write(conn: None, batch: list[str]) -> Written:
        await store.gate.wait()  # never set: the writer is cancelled here
        raise AssertionError("unreachable")

    commit = group_commit(store, write)
    waiting = asyncio.create_task(commit.submit("r"))
    await asyncio.sleep(0.01)
    for writer in list(commit._batches._writers):
        writer.cancel()

    with pytest.raises(Unavailable):
        await asyncio.wait_for(waiting, 2.0)


async def _answer_and_publish(conn: None, batch: list[str]) -> Written:
    """Each request answered with `op-<name>`, one outbox row `<name>` each."""
    done = Written()
    done.answers = {index: Answered(f"op-{name}") for index, name in enumerate(batch)}  # type: ignore[misc]
    done.rows = list(batch)  # type: ignore[arg-type]
    return done


async def test_a_request_is_answered_before_the_broker_confirms_its_rows() -> None:
    broker = StalledBroker()
    commit = GroupCommit(Store(), broker, lambda op: None, _answer_and_publish)  # type: ignore[arg-type]

    assert (await asyncio.wait_for(commit.submit("r"), 2.0)).id == "op-r"
    assert broker.published == []

    broker.confirm.set()
    await commit.close()
    assert broker.published == ["r"]


async def test_batches_waiting_for_the_broker_hold_their_writers() -> None:
    """A stalled broker still bounds the batches in flight: a request after them waits."""
    broker = StalledBroker()
    commit = GroupCommit(Store(), broker, lambda op: None, _answer_and_publish)  # type: ignore[arg-type]
    first = []
    for n in range(MAX_WRITERS):
        first.append(asyncio.create_task(commit.submit(f"r{n}")))
        for _ in range(3):
            await asyncio.sleep(0)  # let each start its own writer
    await asyncio.wait_for(asyncio.gather(*first), 2.0)

    late = asyncio.create_task(commit.submit("late"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not late.done()  # no writer is free while the broker has not answered

    broker.confirm.set()
    assert (await asyncio.wait_for(late, 2.0)).id == "op-late"
    await commit.close()
    assert sorted(broker.published) == sorted(["late", *(f"r{n}" for n in range(MAX_WRITERS))])
