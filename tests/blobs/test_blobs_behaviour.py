"""The blob store's contract, run on every backend: content addressing, identical bytes stored
once, and nothing left behind by a writer that is left without commit."""

import asyncio
import hashlib

import pytest
from blobs.backends import PART, Backend, MiB

from worker.blobs import BlobRef, BlobStore


async def put(store: BlobStore, *chunks: bytes) -> BlobRef:
    async with store.blob_writer() as writer:
        for chunk in chunks:
            await writer.write(chunk)
        return await writer.commit()


def address(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"sha256/{digest[:2]}/{digest}"


def pattern(size: int, seed: int = 0) -> bytes:
    """`size` bytes that differ from part to part, so that a misplaced part shows."""
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest() * (MiB // 32)
    return b"".join(bytes([i % 251]) + block[1:] for i in range(-(-size // MiB)))[:size]


async def test_commit_stores_content_under_its_sha256(backend: Backend) -> None:
    ref = await put(backend.store, b"hello ", b"world")

    digest = hashlib.sha256(b"hello world").hexdigest()
    assert ref == BlobRef(digest=digest, size=11)
    assert await backend.read(digest) == b"hello world"
    assert await backend.store.exists(digest)
    assert await backend.stored() == [address(b"hello world")]


async def test_an_empty_blob_is_a_blob(backend: Backend) -> None:
    ref = await put(backend.store)

    assert ref == BlobRef(digest=hashlib.sha256(b"").hexdigest(), size=0)
    assert await backend.read(ref.digest) == b""


async def test_a_multipart_blob_round_trips(backend: Backend) -> None:
    data = pattern(20 * MiB)

    ref = await put(backend.store, *(data[i : i + MiB] for i in range(0, len(data), MiB)))

    assert ref == BlobRef(digest=hashlib.sha256(data).hexdigest(), size=len(data))
    assert await backend.read(ref.digest) == data
    assert await backend.stored() == [address(data)]


async def test_chunks_larger_than_a_part_round_trip(backend: Backend) -> None:
    data = pattern(2 * PART + 123, seed=1)

    ref = await put(backend.store, data[:7], data[7:])

    assert await backend.read(ref.digest) == data
    assert await backend.stored() == [address(data)]


@pytest.mark.parametrize("size", [4, PART + MiB], ids=["small", "multipart"])
async def test_identical_bytes_are_stored_once(backend: Backend, size: int) -> None:
    data = pattern(size, seed=2)

    first = await put(backend.store, data)
    second = await put(backend.store, data[:3], data[3:])

    assert first == second
    assert await backend.read(first.digest) == data
    assert await backend.stored() == [address(data)]


@pytest.mark.parametrize("size", [7, PART + MiB], ids=["small", "multipart"])
async def test_leaving_without_commit_stores_nothing(backend: Backend, size: int) -> None:
    async with backend.store.blob_writer() as writer:
        await writer.write(pattern(size))

    assert await backend.stored() == []


async def test_an_error_inside_the_writer_leaves_nothing(backend: Backend) -> None:
    with pytest.raises(RuntimeError):
        async with backend.store.blob_writer() as writer:
            await writer.write(pattern(PART + MiB))
            assert len(await backend.stored()) == 1  # the upload in progress
            raise RuntimeError("source broke")

    assert await backend.stored() == []


async def test_cancellation_leaves_nothing(backend: Backend) -> None:
    written = asyncio.Event()

    async def stuck() -> None:
        async with backend.store.blob_writer() as writer:
            await writer.write(pattern(PART + MiB))
            written.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await written.wait()
    assert len(await backend.stored()) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await backend.stored() == []


async def test_a_writer_refuses_writes_after_commit(backend: Backend) -> None:
    async with backend.store.blob_writer() as writer:
        await writer.write(b"done")
        await writer.commit()
        with pytest.raises(ValueError):
            await writer.write(b"more")
        with pytest.raises(ValueError):
            await writer.commit()


async def test_delete_is_idempotent(backend: Backend) -> None:
    ref = await put(backend.store, b"gone soon")
    kept = await put(backend.store, b"kept")

    await backend.store.delete(ref.digest)
    await backend.store.delete(ref.digest)

    assert not await backend.store.exists(ref.digest)
    assert await backend.store.exists(kept.digest)
    assert await backend.stored() == [address(b"kept")]


async def test_exists_only_for_committed_blobs(backend: Backend) -> None:
    digest = hashlib.sha256(b"never stored").hexdigest()

    assert not await backend.store.exists(digest)
    with pytest.raises(ValueError):
        await backend.store.exists("../../etc/passwd")
    with pytest.raises(ValueError):
        await backend.store.delete("ABC")
