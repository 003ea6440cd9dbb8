"""Group commit for creates: creates that arrive while earlier ones are being written wait,
then go together into one transaction, with one statement per table for the whole batch
instead of a round trip per row, and one commit.

A batch is all or nothing. The checks that only read (the caller's permission on the folder,
an Idempotency-Key used before, the source image) answer their own request and leave the rest
of the batch alone. A conflict that only writing reveals (a name already taken, a key claimed
by a concurrent request) rolls the batch back, and each of its creates is written again on
its own, where the conflict is answered to the request that caused it. A lone create is a
batch of one: there is no other create path.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable

import msgspec

from bus.outbox import OutboxPublisher
from contracts.commands import CreateImage, ImageSource, command_message
from contracts.enums import ImageStatus
from contracts.errors import Aborted, AlreadyExists, ApiError, FailedPrecondition
from contracts.operations import Operation
from contracts.outbox import OutboxMessage
from gateway import authz
from gateway.authz import Permission
from gateway.context import RequestContext
from gateway.writes import replayed
from store import event_log, events, idempotency, images, operations, outbox
from store.clock import now_us
from store.db import Connection, Database, UniqueViolation
from store.idempotency import Claim
from store.images import ImageRecord, to_image
from store.operations import OperationRecord, to_operation

MAX_BATCH = 64
# Batches written at once: while one waits for the database, the next is being built.
MAX_WRITERS = 4


class PendingCreate(msgspec.Struct, kw_only=True):
    """One create request, checked for everything that needs no database."""

    context: RequestContext
    image: ImageRecord
    op: OperationRecord
    command: CreateImage
    source: ImageSource
    key: Claim | None


class _Conflict(Exception):
    """Writing the batch hit a unique constraint: `name` (an image name) or `key`."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Batch:
    """What a batch's transaction decided: an answer for each create it wrote or refused,
    the outbox rows to publish, and the creates that repeat a key of another one in the
    same batch (written again after it, to be answered with its operation)."""

    def __init__(self) -> None:
        self.answers: dict[int, Operation | ApiError] = {}
        self.written: list[PendingCreate] = []
        self.rows: list[OutboxMessage] = []
        self.repeats: list[int] = []


Waiting = tuple[PendingCreate, "asyncio.Future[Operation]"]


class CreateBatches:
    def __init__(
        self,
        db: Database,
        publisher: OutboxPublisher,
        started: Callable[[OperationRecord], None],
    ) -> None:
        """`started` is told of each operation written (the gateway's metrics)."""
        self._db = db
        self._publisher = publisher
        self._started = started
        self._waiting: list[Waiting] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def create(self, pending: PendingCreate) -> Operation:
        """Write the create with whatever else is waiting; its operation (or an earlier one,
        for a repeated Idempotency-Key)."""
        answer: asyncio.Future[Operation] = asyncio.get_running_loop().create_future()
        self._waiting.append((pending, answer))
        if len(self._writers) < MAX_WRITERS:
            writer = asyncio.create_task(self._write_waiting(), name="kiln-create-batches")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await answer

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            await self._write(batch)

    async def close(self) -> None:
        """Wait for the batches being written: their requests are waiting for them."""
        await asyncio.gather(*self._writers, return_exceptions=True)

    async def _write(self, batch: list[Waiting], attempts: int = 2) -> None:
        try:
            async with self._db.transaction() as conn:
                done = await _write_batch(conn, [pending for pending, _ in batch])
        except _Conflict as conflict:
            await self._write_again(batch, conflict, attempts)
            return
        except Exception as exc:  # every request of the batch answers with it (503, 500)
            for _, answer in batch:
                _answer(answer, exc)
            return
        except asyncio.CancelledError:
            for _, answer in batch:
                answer.cancel()
            raise
        try:
            for pending in done.written:
                self._started(pending.op)
            await self._publisher.publish(done.rows)
        finally:
            for index, result in done.answers.items():
                _answer(batch[index][1], result)
        if done.repeats:
            await self._write([batch[index] for index in done.repeats])

    async def _write_again(self, batch: list[Waiting], conflict: _Conflict, attempts: int) -> None:
        """After a conflict: each create alone, so that only its own request fails."""
        if len(batch) > 1:
            for one in batch:
                await self._write([one])
        elif conflict.kind == "key" and attempts > 1:
            await self._write(batch, attempts - 1)  # the key's first use is stored now
        elif conflict.kind == "key":
            _answer(batch[0][1], Aborted("Idempotency-Key: claimed concurrently, retry"))
        else:
            _answer(batch[0][1], _name_taken(batch[0][0].image))


async def _write_batch(conn: Connection, batch: list[PendingCreate]) -> _Batch:
    """Check each create in the order a lone one would be (folder permission, key, source
    image), then write those that passed, all in one statement per table."""
    done = _Batch()
    checks = _Checks(conn)
    previous = await idempotency.find(conn, [p.key for p in batch if p.key is not None])
    claimed: set[tuple[str, str]] = set()
    for index, pending in enumerate(batch):
        try:
            await checks.folder(pending.context, pending.image.folder_id)
            if pending.key is not None:
                pair = (pending.key.subject, pending.key.key)
                if pair in previous:
                    done.answers[index] = await replayed(conn, pending.key, previous[pair])
                    continue
                if pair in claimed:
                    done.repeats.append(index)
                    continue
                claimed.add(pair)
            if pending.source.image_id:
                await checks.source(pending.context, pending.source.image_id)
        except ApiError as exc:
            done.answers[index] = exc
            continue
        done.answers[index] = to_operation(pending.op)
        done.written.append(pending)
    if done.written:
        done.rows = await _insert(conn, done.written)
    return done


async def _insert(conn: Connection, batch: list[PendingCreate]) -> list[OutboxMessage]:
    """Write the creates: images, operations, keys, each image's first event and command."""
    now = now_us()
    keys = [(p.key, p.op.id) for p in batch if p.key is not None]
    try:
        await idempotency.insert_many(conn, keys, now)
    except UniqueViolation:
        raise _Conflict("key") from None
    for pending in batch:
        pending.image.event_seq = 1  # its "created" event, written below
    try:
        await images.insert_many(conn, [p.image for p in batch])
    except UniqueViolation:
        raise _Conflict("name") from None
    await operations.insert_many(conn, [p.op for p in batch])
    messages: list[OutboxMessage] = []
    entries: list[tuple[str, str, bytes, int]] = []
    for pending in batch:
        image = pending.image
        created = events.event_message(image, "created", pending.op.id, to_image(image), now)
        messages += [created, command_message(pending.command)]
        entries.append((image.folder_id, created.type, created.body, now))
    await event_log.append_many(conn, entries)
    return await outbox.add_many(conn, messages, now)


class _Checks:
    """The read-only checks of one batch: each caller's permission on a folder, and its
    use of a source image, looked up once per batch."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._seen: dict[Hashable, ApiError | None] = {}

    async def folder(self, context: RequestContext, folder_id: str) -> None:
        async def check() -> None:
            await authz.require_on_folder(self._conn, context, folder_id, Permission.CREATE)

        await self._once(("folder", context.subject, context.admin, folder_id), check)

    async def source(self, context: RequestContext, image_id: str) -> None:
        async def check() -> None:
            wanted = (Permission.USE, Permission.GET)
            source = await authz.image(self._conn, context, image_id, *wanted)
            if source.status is not ImageStatus.READY:
                raise FailedPrecondition(
                    f"source image {image_id} is {source.status.value}, not READY"
                )

        await self._once(("source", context.subject, context.admin, image_id), check)

    async def _once(self, key: Hashable, check: Callable[[], Awaitable[None]]) -> None:
        if key not in self._seen:
            try:
                await check()
                self._seen[key] = None
            except ApiError as exc:
                self._seen[key] = exc
        if (error := self._seen[key]) is not None:
            raise error


def _answer(answer: asyncio.Future[Operation], result: Operation | BaseException) -> None:
    if answer.done():  # the request was cancelled (its client left)
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    else:
        answer.set_result(result)


def _name_taken(image: ImageRecord) -> AlreadyExists:
    return AlreadyExists(
        f"an image named {image.name!r} already exists in folder {image.folder_id}"
    )
