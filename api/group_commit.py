"""Group commit of creates and updates: requests that arrive while earlier ones are being written
wait, then go together (runtime/batching.py) into one transaction, written with one statement per
table for the whole batch instead of a round trip per row, and one commit
(api/create_batches.py, api/update_batches.py); a lone request is a batch of
one. Requests are answered once their batch commits; its writer then publishes the batch's outbox
rows before it takes another batch, so a slow broker still bounds the batches in flight.

A batch is all or nothing, and each request is still answered as if it had been alone. The
checks that only read answer their own request and leave the rest of the batch alone. A
conflict that only writing reveals (a unique constraint) rolls the batch back, and each of
its requests is written again on its own, where the conflict is answered to the one that
caused it. A request that must see another of the same batch written first (the same
Idempotency-Key, the same image) is written after it, in a batch of its own.
"""

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from bus.outbox_publisher import OutboxPublisher
from contracts.errors import Aborted, ApiError, Unavailable
from contracts.operations import Operation
from contracts.outbox_message import OutboxMessage
from runtime.batching import Batches, Waiting, answer
from store.db import Connection, Contention, Database
from store.operations import OperationRecord

P = TypeVar("P")
MAX_BATCH = 64
# Batches written at once: while one waits for the database, the next is being built.
MAX_WRITERS = 4


class Conflict(Exception):
    """Writing the batch collided with another transaction. Each request is written again
    alone; when the batch was one request, it is answered with `error`, or first tried once
    more when `retry` (a key another request claimed meanwhile is then replayed)."""

    def __init__(self, error: ApiError, *, retry: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry = retry


def key_claimed() -> Conflict:
    """A key another request claimed meanwhile: written again, the request replays it."""
    return Conflict(Aborted("Idempotency-Key: claimed by a concurrent request; retry"), retry=True)


def _collided() -> Conflict:
    """A deadlock between batches (their rows met in opposite orders): written again alone."""
    return Conflict(Aborted("the request collided with a concurrent one; retry"), retry=True)


class Written:
    """What a batch's transaction decided: an answer for each request (by its index in the
    batch) it wrote or refused, the operations it started, the outbox rows to publish, and
    the requests to write after this batch (`later`)."""

    def __init__(self) -> None:
        self.answers: dict[int, Operation | ApiError] = {}
        self.started: list[OperationRecord] = []
        self.rows: list[OutboxMessage] = []
        self.later: list[int] = []


WriteBatch = Callable[[Connection, list[P]], Awaitable[Written]]


class GroupCommit(Generic[P]):
    def __init__(
        self,
        db: Database,
        publisher: OutboxPublisher,
        started: Callable[[OperationRecord], None],
        write: WriteBatch[P],
    ) -> None:
        """`write` checks and writes one batch in the transaction it is given; `started` is told
        of each operation written (api/mutating_calls.py count_started)."""
        self._db = db
        self._publisher = publisher
        self._started = started
        self._write_batch = write
        self._batches: Batches[P, Operation] = Batches(
            self._write,
            _interrupted,
            name="kiln-group-commit",
            max_batch=MAX_BATCH,
            max_writers=MAX_WRITERS,
        )

    async def submit(self, pending: P) -> Operation:
        """Write the request with whatever else is waiting; its operation (an earlier one for
        a repeated Idempotency-Key), whose id the request's log lines carry from then on."""
        operation = await self._batches.submit(pending)
        structlog.contextvars.bind_contextvars(operation_id=operation.id)
        return operation

    async def close(self) -> None:
        """Wait for the batches being written: their requests are waiting for them."""
        await self._batches.close()

    async def _write(self, batch: list[Waiting[P, Operation]], attempts: int = 2) -> None:
        try:
            async with self._db.transaction() as conn:
                done = await self._write_batch(conn, [pending for pending, _ in batch])
        except Conflict as conflict:
            await self._write_again(batch, conflict, attempts)
            return
        except Contention:
            await self._write_again(batch, _collided(), attempts)
            return
        except Exception as exc:  # every request of the batch answers with it (503, 500)
            for _, future in batch:
                answer(future, exc)
            return
        for index, result in done.answers.items():
            answer(batch[index][1], result)
        for op in done.started:
            self._started(op)
        await self._publisher.publish(done.rows)
        if done.later:
            await self._write([batch[index] for index in done.later])

    async def _write_again(
        self, batch: list[Waiting[P, Operation]], conflict: Conflict, attempts: int
    ) -> None:
        """After a conflict: each request alone, so that only its own fails."""
        if len(batch) > 1:
            for one in batch:
                await self._write([one])
        elif conflict.retry and attempts > 1:
            await self._write(batch, attempts - 1)
        else:
            answer(batch[0][1], conflict.error)


def _interrupted() -> Unavailable:
    return Unavailable("the request was interrupted; retry")
