"""Group commit of transitions (worker/committer.py): changes asked for together share one
transaction and one publish, each is answered with its own result (once committed, before the
broker confirms its rows) and logged in its handler's context, and one that fails takes only
itself down. The batches here are carried out by `insert`, not the lifecycle's transitions."""

import asyncio
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from contracts.enums import ImageStatus
from contracts.outbox_message import OutboxMessage
from lifecycle.locked_rows import Finished
from lifecycle.transitions import Transition
from runtime.clock import now_us
from store import images
from store.db import Connection
from store.images import ImageRecord
from tests.worker.conftest import Backend
from worker.blobs import FileBlobStore
from worker.committer import Committer


class Insert(msgspec.Struct, frozen=True):
    image_id: str
    fail: bool = False


class Publisher:
    """Stands in for the outbox publisher: counts the messages of each publish call, once
    `confirm` is set."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.fail_next = False
        self.confirm = asyncio.Event()
        self.confirm.set()

    async def publish(self, messages: list[OutboxMessage]) -> bool:
        await self.confirm.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the broker client broke")
        if messages:
            self.calls.append(len(messages))
        return True


def _committer(backend: Backend, blob_root: Path) -> tuple[Committer, Publisher]:
    publisher = Publisher()
    blobs = FileBlobStore(blob_root)
    commit = Committer(backend.db, publisher, blobs, run=insert)  # type: ignore[arg-type]
    return commit, publisher


seen: list[tuple[str, Connection]] = []


async def insert(conn: Connection, changes: Sequence[Insert]) -> list[Transition]:
    """Store the images; refuse after writing one when told to fail (so a rollback shows).
    Each ends an operation in error, which its handler logs."""
    results = []
    for data in changes:
        seen.append((data.image_id, conn))
        record = ImageRecord(
            id=data.image_id, folder_id="f", status=ImageStatus.READY, created_at=now_us()
        )
        await images.insert(conn, record)
        if data.fail:
            raise ValueError(f"{data.image_id} refused")
        message = OutboxMessage(
            exchange="", routing_key="nowhere", message_id=data.image_id, body=b""
        )
        ended = Finished(f"op-{data.image_id}", "test.insert", 9, "refused on purpose")
        results.append(Transition(applied=True, messages=[message], finished=[ended]))
    return results


async def _commit_as_handler(commit: Committer, data: Insert) -> Transition:
    with structlog.contextvars.bound_contextvars(image_id=data.image_id):
        return await commit(data)


async def _stored(backend: Backend, image_ids: list[str]) -> list[str]:
    async with backend.db.transaction() as conn:
        return [i for i in image_ids if await images.get(conn, i) is not None]


async def test_transitions_asked_for_together_share_a_transaction_and_a_publish(
    backend: Backend, blob_root: Path, logs: list[MutableMapping[str, Any]]
) -> None:
    commit, publisher = _committer(backend, blob_root)
    seen.clear()
    ids = [f"img{n:017d}" for n in range(10, 0, -1)]

    results = await asyncio.gather(*(_commit_as_handler(commit, Insert(i)) for i in ids))

    assert [r.messages[0].message_id for r in results] == ids  # each its own answer
    assert len({id(conn) for _, conn in seen}) == 1  # one transaction
    assert publisher.calls == [len(ids)]
    failed = [line for line in logs if line["event"] == "operation.failed"]
    logged = {(line["image_id"], line["operation_id"], line["code"]) for line in failed}
    assert logged == {(i, f"op-{i}", 9) for i in ids}  # each in its handler's context
    assert await _stored(backend, ids) == ids


async def test_a_failing_transition_fails_alone(
    backend: Backend, blob_root: Path, logs: list[MutableMapping[str, Any]]
) -> None:
    commit, _ = _committer(backend, blob_root)
    seen.clear()
    ids = [f"img{n:017d}" for n in range(20, 23)]
    doomed = ids[1]

    results = await asyncio.gather(
        *(_commit_as_handler(commit, Insert(i, fail=i == doomed)) for i in ids),
        return_exceptions=True,
    )

    assert isinstance(results[1], ValueError)
    assert all(isinstance(r, Transition) and r.applied for r in (results[0], results[2]))
    assert await _stored(backend, ids) == [ids[0], ids[2]]
    # Tried together, rolled back (else the second insert would collide), then alone.
    assert [image_id for image_id, _ in seen].count(ids[0]) == 2
    retries = [line for line in logs if line["event"] == "transition.retry"]
    assert retries and all(line.get("image_id") == doomed for line in retries)


async def test_a_failure_after_commit_still_answers_and_the_committer_goes_on(
    backend: Backend, blob_root: Path
) -> None:
    commit, publisher = _committer(backend, blob_root)
    publisher.fail_next = True
    ids = [f"img{n:017d}" for n in range(30, 33)]

    results = await asyncio.gather(*(_commit_as_handler(commit, Insert(i)) for i in ids))

    assert all(r.applied for r in results)  # committed: answered as such
    later = await asyncio.wait_for(_commit_as_handler(commit, Insert("img00000000000000040")), 5)
    assert later.applied and publisher.calls == [1]


class LookedUpTogether(FileBlobStore):
    """Answers `exists` (yes) only while `together` lookups wait at once; half a second at
    most, then the lookup fails."""

    def __init__(self, root: Path, together: int) -> None:
        super().__init__(root)
        self._all_asked = asyncio.Barrier(together)

    async def exists(self, digest: str) -> bool:
        async with asyncio.timeout(0.5):
            await self._all_asked.wait()
        return True


async def test_a_batch_looks_up_its_blobs_all_at_once(backend: Backend, blob_root: Path) -> None:
    """On an object store each lookup is a request, made while the batch holds its locks."""
    ids = [f"img{n:017d}" for n in range(60, 63)]
    blobs = LookedUpTogether(blob_root, len(ids))
    commit = Committer(backend.db, Publisher(), blobs, run=insert)  # type: ignore[arg-type]

    asked = (commit(Insert(i), uses=f"sha256:{i}") for i in ids)
    results = await asyncio.wait_for(asyncio.gather(*asked), 5)

    assert all(r.applied for r in results)


async def test_a_transition_is_answered_before_the_broker_confirms_its_rows(
    backend: Backend, blob_root: Path
) -> None:
    """Its handler can acknowledge its command while the publish waits for the broker."""
    commit, publisher = _committer(backend, blob_root)
    publisher.confirm.clear()

    result = await asyncio.wait_for(_commit_as_handler(commit, Insert("img00000000000000050")), 5)
    assert result.applied and publisher.calls == []

    publisher.confirm.set()
    await commit.close()
    assert publisher.calls == [1]


@pytest.fixture(autouse=True)
def _no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failing transition is retried alone; its retries need not wait."""
    monkeypatch.setattr("worker.committer.tenacity.wait_random", lambda *_: lambda _: 0)
