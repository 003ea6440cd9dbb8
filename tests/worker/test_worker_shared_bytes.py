"""Bytes shared between images: an import that found its bytes already stored cannot commit
READY once a concurrent delete released them, and a release keeps bytes someone uses."""

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from bus.outbox_publisher import OutboxPublisher
from contracts.enums import ImageStatus
from lifecycle.transitions import Transition
from runtime.clock import now_us
from store import images
from store.images import ImageRecord
from store.outbox_table import SentMarker
from tests.worker.conftest import Backend
from tests.worker.worker_testkit import store_bytes
from worker.blobs import FileBlobStore
from worker.committer import BytesReleased, Committer, RunChanges


async def _nothing(conn: object, changes: Sequence[object]) -> list[Transition]:
    return [Transition(applied=True) for _ in changes]


async def _release(conn: object, digests: Sequence[str]) -> list[Transition]:
    """Each change names bytes to release."""
    return [Transition(applied=True, release=digest) for digest in digests]


def _committer(backend: Backend, blobs: FileBlobStore, run: RunChanges) -> Committer:
    return Committer(
        backend.db, OutboxPublisher(backend.bus, SentMarker(backend.db)), blobs, run=run
    )


async def test_committing_an_image_onto_released_bytes_is_refused(
    backend: Backend, blob_root: Path
) -> None:
    blobs = FileBlobStore(blob_root)
    commit = _committer(backend, blobs, _nothing)
    missing = hashlib.sha256(b"released meanwhile").hexdigest()

    with pytest.raises(BytesReleased):
        await commit(None, uses=missing)

    digest = await store_bytes(blobs, b"still here")
    assert (await commit(None, uses=digest)).applied


async def test_a_release_keeps_bytes_an_image_still_uses(backend: Backend, blob_root: Path) -> None:
    blobs = FileBlobStore(blob_root)
    commit = _committer(backend, blobs, _release)
    digest = await store_bytes(blobs, b"shared bytes")
    user = ImageRecord(
        id="img00000000000000001",
        folder_id="f",
        status=ImageStatus.READY,
        created_at=now_us(),
        blob_digest=digest,
    )
    async with backend.db.transaction() as conn:
        await images.insert(conn, user)

    await commit(digest)
    assert await blobs.exists(digest)

    async with backend.db.transaction() as conn:
        await images.delete_locked(conn, [user.id])
    await commit(digest)
    assert not await blobs.exists(digest)
