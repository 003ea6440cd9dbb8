"""What only the S3 store has: interrupted requests, UploadPartCopy for blobs over the CopyObject
limit, the part-count limit, an unreachable endpoint, the sweep, and the key layout."""

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from blobs.backends import PART, MiB, S3Backend

from contracts.errors import Code
from worker.blobs_s3 import S3BlobStore, S3Settings
from worker.errors import BlobStoreUnavailable, ImportRefused

Call = Callable[..., Awaitable[Any]]


async def hang_after(store: S3BlobStore, operation: str) -> asyncio.Event:
    """Make `operation` reach the server, then never answer; the event tells it was sent."""
    client = await store.client()
    real: Call = getattr(client, operation)
    sent = asyncio.Event()

    async def hanging(**kwargs: Any) -> Any:
        await real(**kwargs)
        sent.set()
        await asyncio.Event().wait()

    setattr(client, operation, hanging)
    return sent


async def count_calls(store: S3BlobStore, operation: str) -> list[dict[str, Any]]:
    client = await store.client()
    real: Call = getattr(client, operation)
    calls: list[dict[str, Any]] = []

    async def counted(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real(**kwargs)

    setattr(client, operation, counted)
    return calls


@pytest.mark.parametrize(
    "operation", ["create_multipart_upload", "upload_part", "complete_multipart_upload"]
)
async def test_cancelling_an_unanswered_request_leaves_nothing(
    s3_backend: S3Backend, operation: str
) -> None:
    store = s3_backend.store
    sent = await hang_after(store, operation)

    async def put() -> None:
        async with store.blob_writer() as writer:
            await writer.write(b"x" * (PART + MiB))
            await writer.commit()

    task = asyncio.create_task(put())
    await asyncio.wait_for(sent.wait(), 10)
    assert await s3_backend.stored() != []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await s3_backend.stored() == []


async def test_blobs_over_the_copy_limit_are_copied_in_parts(s3_backend: S3Backend) -> None:
    store = s3_backend.store
    store.copy_limit, store.copy_part_size = 6 * MiB, 5 * MiB
    copies = await count_calls(store, "upload_part_copy")
    data = bytes(range(256)) * (20 * MiB // 256) + b"tail"

    async with store.blob_writer() as writer:
        for start in range(0, len(data), MiB):
            await writer.write(data[start : start + MiB])
        ref = await writer.commit()

    assert await s3_backend.read(ref.digest) == data
    assert [c["CopySourceRange"] for c in copies] == [
        f"bytes={start}-{min(start + 5 * MiB, len(data)) - 1}"
        for start in range(0, len(data), 5 * MiB)
    ]
    assert await s3_backend.stored() == [f"sha256/{ref.digest[:2]}/{ref.digest}"]


async def test_a_blob_over_the_part_limit_is_refused(s3_backend: S3Backend) -> None:
    s3_backend.store.max_parts = 2

    with pytest.raises(ImportRefused) as refused:
        async with s3_backend.store.blob_writer() as writer:
            for _ in range(3):
                await writer.write(b"y" * PART)
            await writer.commit()

    assert refused.value.code is Code.RESOURCE_EXHAUSTED
    assert str(2 * PART) in refused.value.message
    assert await s3_backend.stored() == []


async def test_an_unreachable_store_is_a_retry_later(unused_tcp_port: int) -> None:
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{unused_tcp_port}", access_key_id="k", secret_access_key="s"
    )
    store = S3BlobStore("bucket", "blobs", settings)
    try:
        with pytest.raises(BlobStoreUnavailable) as unavailable:
            await store.exists(hashlib.sha256(b"").hexdigest())
        assert unavailable.value.args[0].startswith("object store: ")
        with pytest.raises(BlobStoreUnavailable):
            async with store.blob_writer() as writer:
                await writer.write(b"z" * PART)
    finally:
        await store.close()


async def test_sweep_removes_old_uploads_and_temporary_objects(s3_backend: S3Backend) -> None:
    store = s3_backend.store
    client = await store.client()
    async with store.blob_writer() as kept:
        await kept.write(b"kept")
        ref = await kept.commit()
    await client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/tmp/orphan", Body=b"o")

    assert await store.sweep_temporary(max_age=3600) == 0
    async with store.blob_writer() as writer:
        await writer.write(b"w" * PART)  # an upload left by a killed import
        assert await store.sweep_temporary(max_age=0) == 2
        assert await s3_backend.stored() == [f"sha256/{ref.digest[:2]}/{ref.digest}"]


def test_keys_follow_the_file_store_layout() -> None:
    digest = hashlib.sha256(b"k").hexdigest()

    nested = S3BlobStore("b", "/kiln/images/", S3Settings())
    assert nested.key(digest) == f"kiln/images/sha256/{digest[:2]}/{digest}"
    assert S3BlobStore("b", "", S3Settings()).key(digest) == f"sha256/{digest[:2]}/{digest}"
    with pytest.raises(ValueError):
        nested.key("../" + digest)


def test_settings_come_from_strings_and_refuse_small_parts() -> None:
    given = {"endpoint_url": "http://127.0.0.1:9000", "part_size": "16777216"}
    settings = msgspec.convert(given, S3Settings, strict=False)
    assert settings.part_size == 16 * MiB

    with pytest.raises(msgspec.ValidationError, match="part_size"):
        msgspec.convert({"part_size": str(MiB)}, S3Settings, strict=False)


def test_settings_never_show_the_secret() -> None:
    settings = S3Settings(access_key_id="AKIA1", secret_access_key="very-secret")

    assert "very-secret" not in repr(settings)
    assert "AKIA1" in repr(settings)
