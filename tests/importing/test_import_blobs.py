import asyncio
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.blobs import BlobRef, FileBlobStore, FileBlobWriter

Stored = Callable[[], list[Path]]
# Enough bytes for the writer to hand them to its thread, which creates the temporary file.
PARTIAL = bytes(FileBlobWriter.BUFFER)


async def put(blobs: FileBlobStore, *chunks: bytes) -> BlobRef:
    async with blobs.blob_writer() as writer:
        for chunk in chunks:
            await writer.write(chunk)
        return await writer.commit()


async def test_commit_stores_content_under_its_sha256(blobs: FileBlobStore, stored: Stored) -> None:
    ref = await put(blobs, b"hello ", b"world")

    digest = hashlib.sha256(b"hello world").hexdigest()
    assert ref == BlobRef(digest=digest, size=11)
    assert blobs.path(digest) == blobs.root / "sha256" / digest[:2] / digest
    assert blobs.path(digest).read_bytes() == b"hello world"
    assert await blobs.exists(digest)
    assert stored() == [blobs.path(digest)]


async def test_identical_bytes_are_stored_once(blobs: FileBlobStore, stored: Stored) -> None:
    first = await put(blobs, b"same")
    second = await put(blobs, b"sa", b"me")

    assert first == second
    assert stored() == [blobs.path(first.digest)]


async def test_a_committed_writer_unlinks_nothing_on_the_event_loop(
    blobs: FileBlobStore, stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unlink on the loop waits for the temporary directory while other imports create
    files in it; after a commit there is nothing left to remove there."""
    unlinked_on_loop: list[bool] = []
    unlink = Path.unlink

    def watched(path: Path, missing_ok: bool = False) -> None:
        unlinked_on_loop.append(threading.current_thread() is threading.main_thread())
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", watched)
    first = await put(blobs, b"same")
    second = await put(blobs, b"same")  # stored already: its temporary file is removed

    assert first == second
    assert stored() == [blobs.path(first.digest)]
    assert unlinked_on_loop == [False]


async def test_leaving_without_commit_stores_nothing(blobs: FileBlobStore, stored: Stored) -> None:
    async with blobs.blob_writer() as writer:
        await writer.write(PARTIAL)
        assert len(stored()) == 1

    assert stored() == []


async def test_an_error_inside_the_writer_removes_the_temporary_file(
    blobs: FileBlobStore, stored: Stored
) -> None:
    with pytest.raises(RuntimeError):
        async with blobs.blob_writer() as writer:
            await writer.write(PARTIAL)
            assert len(stored()) == 1
            raise RuntimeError("source broke")

    assert stored() == []


async def test_cancellation_removes_the_temporary_file(
    blobs: FileBlobStore, stored: Stored
) -> None:
    written = asyncio.Event()

    async def stuck() -> None:
        async with blobs.blob_writer() as writer:
            await writer.write(PARTIAL)
            written.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await written.wait()
    assert len(stored()) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert stored() == []


async def test_a_hop_that_runs_after_discard_creates_no_file(
    blobs: FileBlobStore, stored: Stored
) -> None:
    async with blobs.blob_writer() as writer:
        await writer.write(b"buffered, not yet handed to the thread")
        writer.discard()  # as the context's exit does under a cancelled task's pending hop
        with pytest.raises(ValueError):
            await writer.commit()

    assert stored() == []


async def test_delete_is_idempotent(blobs: FileBlobStore, stored: Stored) -> None:
    ref = await put(blobs, b"gone soon")

    await blobs.delete(ref.digest)
    await blobs.delete(ref.digest)

    assert not await blobs.exists(ref.digest)


def test_path_refuses_anything_but_a_hex_digest(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FileBlobStore(tmp_path).path("../../etc/passwd")
