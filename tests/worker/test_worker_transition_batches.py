"""A batch of changes carried out together (lifecycle/transitions.py, through the worker's
group commit): decided against rows locked at once and written with as many statements for
many changes as for two, with the results a lone change gets; the uncommon cases of a batch
(an interrupted create, a copy of a deleted image, two changes of one operation) get the
answers they would get alone."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.enums import ImageStatus
from contracts.errors import Code
from contracts.events import event_decoder
from contracts.images import ImageAny, min_disk_size
from contracts.outbox_message import OutboxMessage
from lifecycle.changes import ImportDone, Imported, Lease, OperationFailed, StartImport
from lifecycle.transitions import Transition
from store.db import Connection, Database
from store.operations import to_operation
from tests.worker.conftest import Backend
from tests.worker.test_worker_commit_batches import Publisher
from tests.worker.worker_testkit import GatewayDouble, store_bytes
from worker.blobs import FileBlobStore
from worker.committer import Committer

OWNER = "worker-test"
DIGEST = "ab" * 32
COPY_OF_A_DELETED_IMAGE = {"digest": DIGEST, "size": 1, "storage_size": 1, "copied_from": "gone"}


class Counting:
    """Counts the statements each transaction of a database runs."""

    def __init__(self, inner: Connection, counts: list[int]) -> None:
        self._inner, self._counts = inner, counts
        self.dialect = inner.dialect

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def counted(*args: Any) -> Any:
            self._counts[-1] += 1
            return method(*args)

        return counted


class CountingDatabase:
    def __init__(self, inner: Database) -> None:
        self._inner = inner
        self.dialect = inner.dialect
        self.statements: list[int] = []  # per transaction, in order

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Counting]:
        async with self._inner.transaction() as conn:
            self.statements.append(0)
            yield Counting(conn, self.statements)


async def _creates(gateway: GatewayDouble, count: int) -> list[tuple[str, str]]:
    return [
        await gateway.create(uri="http://127.0.0.1/x.qcow2", publish=False) for _ in range(count)
    ]


def _start(image_id: str, operation_id: str) -> StartImport:
    lease = Lease(operation_id=operation_id, owner=OWNER, length_us=60_000_000)
    return StartImport(image_id=image_id, lease=lease)


def _done(image_id: str, operation_id: str, digest: str = DIGEST) -> ImportDone:
    result = Imported(digest=digest, size=4096, storage_size=1024, requested_min_disk_size=8192)
    return ImportDone(operation_id=operation_id, image_id=image_id, result=result)


async def _together(commit: Committer, changes: Sequence[object]) -> list[Transition]:
    return list(await asyncio.gather(*(commit(change) for change in changes)))


def _events(messages: list[OutboxMessage]) -> list[tuple[str, str]]:
    decoded = [event_decoder.decode(m.body) for m in messages]
    return [(e.type.rsplit(".", 1)[-1], e.sequence) for e in decoded]


@pytest.fixture
def counting(backend: Backend) -> CountingDatabase:
    return CountingDatabase(backend.db)


@pytest.fixture
def commit(counting: CountingDatabase, blob_root: Path) -> Committer:
    return Committer(counting, Publisher(), FileBlobStore(blob_root))  # type: ignore[arg-type]


async def test_imports_start_and_end_together_as_each_would_alone(
    gateway: GatewayDouble, commit: Committer, counting: CountingDatabase
) -> None:
    creates = await _creates(gateway, 6)

    started = await _together(commit, [_start(*c) for c in creates])

    assert len(counting.statements) == 1  # together, not each alone after a failed batch

    for (_, operation_id), result in zip(creates, started, strict=True):
        assert result.applied and result.claimed is not None
        assert (result.claimed.id, result.claimed.lease_owner) == (operation_id, OWNER)
        assert _events(result.messages) == [("import_started", "2")]
        assert all(m.seq > 0 for m in result.messages)  # as written: the publisher marks them
        assert (await gateway.operation(operation_id)).lease_owner == OWNER

    ended = await _together(commit, [_done(*c) for c in creates])

    assert len(counting.statements) == 2

    for (image_id, operation_id), result in zip(creates, ended, strict=True):
        assert result.applied and not result.cancelled
        assert _events(result.messages) == [("ready", "3"), ("done", "4")]
        assert all(m.seq > 0 for m in result.messages)
        image = await gateway.image(image_id)
        assert image is not None and image.status is ImageStatus.READY
        expected = (DIGEST, 4096, 1024, min_disk_size(8192, 4096))
        assert (image.blob_digest, image.size, image.storage_size, image.min_disk_size) == expected
        assert image.event_seq == 4
        op = await gateway.operation(operation_id)
        assert op.done and op.lease_owner is None and op.error is None
        assert isinstance(op.response, ImageAny) and op.response.status is ImageStatus.READY
        announced = event_decoder.decode(result.messages[1].body).data
        assert announced == msgspec.to_builtins(to_operation(op))  # as stored


async def test_a_batch_of_many_runs_as_many_statements_as_a_batch_of_two(
    gateway: GatewayDouble, commit: Committer, counting: CountingDatabase, blob_root: Path
) -> None:
    blobs = FileBlobStore(blob_root)
    statements = []
    for size in (2, 8):
        creates = await _creates(gateway, size)
        digests = [await store_bytes(blobs, image_id.encode()) for image_id, _ in creates]
        counting.statements.clear()
        started = await _together(commit, [_start(*c) for c in creates])
        statements += counting.statements
        counting.statements.clear()
        # As handlers end imports: each locks the bytes it stored (one statement for all).
        ended = await asyncio.gather(
            *(
                commit(_done(*c, digest), uses=digest)
                for c, digest in zip(creates, digests, strict=True)
            )
        )
        statements += counting.statements
        assert all(r.applied for r in [*started, *ended])

    assert len(statements) == 4  # one transaction each
    assert statements[:2] == statements[2:]


async def test_the_uncommon_cases_of_a_batch_get_their_own_answers(
    gateway: GatewayDouble, commit: Committer, counting: CountingDatabase
) -> None:
    plain, cancelled, twice, copy = await _creates(gateway, 4)
    held = await gateway.create(uri="http://127.0.0.1/x.qcow2", publish=False, lease_owner="other")
    await gateway.request_cancel(cancelled[1])

    started = await _together(
        commit,
        [_start(*c) for c in (plain, cancelled, held, twice, twice, copy)],
    )

    assert len(counting.statements) == 1  # one batch, no rerun
    assert started[0].applied and started[0].claimed is not None
    assert started[1].cancelled and started[1].claimed is not None  # claimed, then stopped
    assert await gateway.image(cancelled[0]) is None
    assert not started[2].applied and started[2].claimed is None
    claims = [r.claimed for r in started[3:5]]
    assert sum(c is not None for c in claims) == 1  # a redelivered command: one claim

    await gateway.request_cancel(twice[1])
    other_bytes = "cd" * 32
    orphan = msgspec.structs.replace(_done(*copy), result=Imported(**COPY_OF_A_DELETED_IMAGE))
    ended = await _together(commit, [_done(*plain), _done(*twice, other_bytes), orphan])

    assert len(counting.statements) == 3  # since the starts: the batch, the bytes released
    assert ended[0].applied and not ended[0].cancelled
    assert ended[1].cancelled and ended[1].release == other_bytes  # no image uses them
    image = await gateway.image(plain[0])
    assert image is not None and image.status is ImageStatus.READY
    assert await gateway.image(twice[0]) is None
    copied = await gateway.image(copy[0])
    assert ended[2].applied and copied is not None and copied.status is ImageStatus.ERROR
    error = (await gateway.operation(copy[1])).error
    assert error is not None and error.code == Code.ABORTED
    assert await _written_twice(counting) == []  # each event and command once in the outbox


async def _written_twice(db: CountingDatabase) -> list[str]:
    """The outbox's message ids written more than once, and the event log's bodies."""
    async with db.transaction() as conn:
        outbox = await conn.fetch("SELECT message_id FROM outbox")
        queued = await conn.fetch("SELECT body FROM event_queue")
        logged = await conn.fetch("SELECT body FROM event_log")
    ids = [row["message_id"] for row in outbox]
    bodies = [bytes(row["body"]) for row in [*queued, *logged]]
    return [i for i in set(ids) if ids.count(i) > 1] + [
        b.decode() for b in set(bodies) if bodies.count(b) > 1
    ]


async def test_two_steps_on_one_operation_finish_it_once(
    gateway: GatewayDouble, commit: Committer
) -> None:
    (first, operation_id), (second, _) = await _creates(gateway, 2)

    ended = await _together(commit, [_done(first, operation_id), _done(second, operation_id)])

    assert sum(r.applied for r in ended) == 1
    done = [m for r in ended for m in r.messages if m.type.endswith("operation.done")]
    assert len(done) == 1


async def test_a_create_ended_earlier_in_the_batch_is_not_claimed(
    gateway: GatewayDouble, commit: Committer
) -> None:
    """A dead letter's failure and a redelivery of the same create, in one batch: the create
    ends once, and nothing starts an import for it."""
    (image_id, operation_id), (other_id, other_op) = await _creates(gateway, 2)
    failure = OperationFailed(
        operation_id=operation_id, image_id=image_id, code=int(Code.INTERNAL), message="dead"
    )

    failed, started, plain = await _together(
        commit, [failure, _start(image_id, operation_id), _start(other_id, other_op)]
    )

    assert failed.applied
    assert not started.applied and started.claimed is None
    assert plain.applied and plain.claimed is not None
    op = await gateway.operation(operation_id)
    assert op.done and op.lease_owner is None and op.error is not None
