"""Blob store on an S3-compatible object store, with the file store's content addressing.

Bytes are hashed as they stream into a multipart upload under `<prefix>/tmp/<random>` (memory: one
part plus the chunk being written). On commit the object is copied server-side to
`<prefix>/sha256/<2 hex>/<digest>` unless that blob already exists; the temporary object and any
unfinished upload are removed when `blob_writer()` is left, so a blob is either complete or absent.
A blob smaller than one part is put directly at its address in one request.
"""

import asyncio
import base64
import contextlib
import hashlib
import io
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import ClientCreatorContext, get_session
from botocore.exceptions import BotoCoreError, ClientError

from contracts.errors import Code
from runtime.clock import now_us, to_datetime
from worker.blobs import BlobRef
from worker.errors import BlobStoreUnavailable, ImportRefused

log = structlog.get_logger(__name__)

MiB = 1 << 20
GiB = 1 << 30
MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
MAX_PART = 5 * GiB  # S3's largest part, and the largest object one CopyObject copies
MAX_PARTS = 10_000  # S3's most parts in one multipart upload
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MISSING = {"404", "NoSuchKey", "NotFound"}

Client = Any  # an aiobotocore S3 client (untyped; types-aiobotocore-s3 would name it)


class S3Settings(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach the object store. Empty keys fall back to botocore's credential chain
    (environment, instance profile); `path` addressing suits MinIO, Ceph, moto and AWS alike."""

    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = ""
    addressing_style: Literal["path", "virtual"] = "path"
    part_size: int = 8 * MiB

    def __post_init__(self) -> None:
        if not MIN_PART <= self.part_size <= MAX_PART:
            raise ValueError(f"part_size must be between {MIN_PART} and {MAX_PART} bytes")

    def __repr__(self) -> str:
        hidden = "'***'" if self.secret_access_key else "''"
        return (
            f"S3Settings(endpoint_url={self.endpoint_url!r}, region={self.region!r},"
            f" access_key_id={self.access_key_id!r}, secret_access_key={hidden},"
            f" addressing_style={self.addressing_style!r}, part_size={self.part_size})"
        )


def open_client(settings: S3Settings) -> ClientCreatorContext:
    """An S3 client (async context manager) for these settings; only they choose the endpoint."""
    config = AioConfig(
        s3={"addressing_style": settings.addressing_style},
        retries={"mode": "standard"},
        # Integrity comes from Content-MD5 on every upload, which S3-compatible stores widely
        # check; botocore's newer default trailing checksums are refused by several of them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        ignore_configured_endpoint_urls=True,
    )
    return get_session().create_client(
        "s3",
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id or None,
        aws_secret_access_key=settings.secret_access_key or None,
        config=config,
    )


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Object-store failures as the worker's "retry later" error."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise BlobStoreUnavailable(f"object store: {exc}") from exc


def is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


async def content_md5(data: io.BytesIO) -> str:
    """Content-MD5 of the buffer (hashed in a thread: a part is megabytes); rewinds it."""

    def md5() -> bytes:
        with data.getbuffer() as view:
            return hashlib.md5(view, usedforsecurity=False).digest()

    digest = await asyncio.to_thread(md5)
    data.seek(0)
    return base64.b64encode(digest).decode()


class S3BlobStore:
    """Blobs at `s3://bucket/<prefix>/sha256/<2 hex>/<digest>`, uploads under `<prefix>/tmp/`.

    The client opens on first use and is bound to that event loop; `close()` releases it.
    """

    max_parts = MAX_PARTS
    copy_limit = MAX_PART  # larger blobs are copied with UploadPartCopy
    copy_part_size = 1 * GiB

    def __init__(self, bucket: str, prefix: str, settings: S3Settings) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._client: Client = None
        self._opening = asyncio.Lock()
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def max_blob_size(self) -> int:
        """The largest blob one multipart upload holds: `max_parts` parts of `part_size`."""
        return self.max_parts * self.settings.part_size

    def key(self, digest: str) -> str:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self._join("sha256", digest[:2], digest)

    @contextlib.asynccontextmanager
    async def blob_writer(self) -> AsyncIterator["S3BlobWriter"]:
        with translated():
            client = await self.client()
        writer = S3BlobWriter(self, client, self._join("tmp", uuid.uuid4().hex))
        try:
            yield writer
        finally:
            await self.finish(writer.discard())

    async def exists(self, digest: str) -> bool:
        key = self.key(digest)
        with translated():
            return await self._exists(await self.client(), key)

    async def delete(self, digest: str) -> None:
        key = self.key(digest)
        with translated():
            await (await self.client()).delete_object(Bucket=self.bucket, Key=key)

    async def writable(self) -> bool:
        """An object store has no full disk to wait for: the next request finds out."""
        return True

    async def sweep_temporary(self, max_age: float) -> int:
        """Abort uploads no part was written to, and delete temporary objects not written, for
        `max_age` seconds (left by a killed import); how many were removed."""
        # On the database's clock (runtime/clock.py), as the object store's times are its own.
        cutoff = to_datetime(now_us()) - timedelta(seconds=max_age)
        removed = 0
        with translated():
            client = await self.client()
            uploads = client.get_paginator("list_multipart_uploads")
            for prefix in (self._join("tmp", ""), self._join("sha256", "")):  # uploads, copies
                async for page in uploads.paginate(Bucket=self.bucket, Prefix=prefix):
                    for upload in page.get("Uploads", []):
                        stale = upload["Initiated"] < cutoff
                        if stale and await self._last_written(client, upload) < cutoff:
                            await self.abort_uploads(client, upload["Key"], upload["UploadId"])
                            removed += 1
            objects = client.get_paginator("list_objects_v2")
            async for page in objects.paginate(Bucket=self.bucket, Prefix=self._join("tmp", "")):
                for item in page.get("Contents", []):
                    if item["LastModified"] < cutoff:
                        await client.delete_object(Bucket=self.bucket, Key=item["Key"])
                        removed += 1
        return removed

    async def _last_written(self, client: Client, upload: dict[str, Any]) -> datetime:
        """When a part was last added to an upload (its start, before the first part): a long
        import of a live worker keeps adding parts."""
        latest = upload["Initiated"]
        parts = client.get_paginator("list_parts")
        pages = parts.paginate(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        async for page in pages:
            for part in page.get("Parts", []):
                latest = max(latest, part["LastModified"])
        return latest  # type: ignore[no-any-return]

    async def client(self) -> Client:
        async with self._opening:
            if self._client is None:
                self._client = await self._stack.enter_async_context(open_client(self.settings))
        return self._client

    async def close(self) -> None:
        """Wait for cleanups still running, then close the client."""
        if self._cleanups:
            await asyncio.wait(self._cleanups)
        self._client = None
        await self._stack.aclose()

    async def finish(self, cleanup: Awaitable[None]) -> None:
        """Run `cleanup` to its end even if the caller is cancelled again meanwhile."""
        task = asyncio.ensure_future(cleanup)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        await asyncio.shield(task)

    async def place(self, client: Client, temp: str, ref: BlobRef) -> None:
        """Copy a completed temporary object to its digest, unless that blob exists."""
        final = self.key(ref.digest)
        if await self._exists(client, final):
            return
        source = {"Bucket": self.bucket, "Key": temp}
        if ref.size <= self.copy_limit:
            await client.copy_object(Bucket=self.bucket, Key=final, CopySource=source)
            return
        upload = await client.create_multipart_upload(Bucket=self.bucket, Key=final)
        try:
            parts = await self._copy_parts(client, source, final, upload["UploadId"], ref.size)
            await client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=final,
                UploadId=upload["UploadId"],
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            await self.finish(self.abort_quietly(client, final, upload["UploadId"]))
            raise

    async def put_small(self, client: Client, digest: str, data: io.BytesIO) -> None:
        """Put a blob of less than one part straight at its digest, unless it exists."""
        final = self.key(digest)
        if await self._exists(client, final):
            return
        md5 = await content_md5(data)
        await client.put_object(Bucket=self.bucket, Key=final, Body=data, ContentMD5=md5)

    async def abort_quietly(self, client: Client, key: str, upload_id: str | None) -> None:
        """`abort_uploads`, only logging a failure (`sweep_temporary` removes what stays)."""
        try:
            await self.abort_uploads(client, key, upload_id)
        except (BotoCoreError, ClientError) as exc:
            log.warning("blob.abort_failed", key=key, error=str(exc))

    async def abort_uploads(self, client: Client, key: str, upload_id: str | None) -> None:
        """Abort the upload `upload_id` of `key`, or every upload of `key` when the id is
        unknown (its CreateMultipartUpload was interrupted before the answer came)."""
        if upload_id is None:
            answer = await client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            ids = [u["UploadId"] for u in answer.get("Uploads", []) if u["Key"] == key]
        else:
            ids = [upload_id]
        for each in ids:
            with contextlib.suppress(ClientError):  # NoSuchUpload: completed or already gone
                await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=each)

    async def _copy_parts(
        self, client: Client, source: dict[str, str], final: str, upload_id: str, size: int
    ) -> list[dict[str, Any]]:
        step = max(self.copy_part_size, -(-size // self.max_parts))
        parts = []
        for number, start in enumerate(range(0, size, step), start=1):
            answer = await client.upload_part_copy(
                Bucket=self.bucket,
                Key=final,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={start}-{min(start + step, size) - 1}",
            )
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        return parts

    async def _exists(self, client: Client, key: str) -> bool:
        try:
            await client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return False
            raise
        return True

    def _join(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts) if self.prefix else parts)


class S3BlobWriter:
    """Hashes each chunk and uploads every full part; the first full part starts the upload."""

    def __init__(self, store: S3BlobStore, client: Client, temp: str) -> None:
        self._store = store
        self._client = client
        self._temp = temp
        self._part_size = store.settings.part_size
        self._buffer = io.BytesIO()  # the part being filled, sent as it is once full
        self._hash = hashlib.sha256()
        self._size = 0
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._upload_requested = False  # an upload may exist, even if its id never came back
        self._complete_requested = False  # the temporary object may exist
        self._closed = False

    async def write(self, chunk: bytes) -> None:
        self._check_open()
        self._hash.update(chunk)
        self._size += len(chunk)
        view = memoryview(chunk)
        try:
            while view:
                room = self._part_size - self._buffer.tell()
                self._buffer.write(view[:room])
                view = view[room:]
                if self._buffer.tell() == self._part_size:
                    await self._upload_part()
        except BaseException:
            self._closed = True  # the stored parts no longer match the hash
            raise

    async def commit(self) -> BlobRef:
        self._check_open()
        self._closed = True
        ref = BlobRef(digest=self._hash.hexdigest(), size=self._size)
        with translated():
            if self._upload_id is None:
                await self._store.put_small(self._client, ref.digest, self._buffer)
                return ref
            if self._buffer.tell():
                await self._upload_part()
            self._complete_requested = True
            await self._client.complete_multipart_upload(
                Bucket=self._store.bucket,
                Key=self._temp,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
            self._upload_requested = False  # completed: nothing left to abort
            await self._store.place(self._client, self._temp, ref)
        return ref

    async def discard(self) -> None:
        """Abort the upload and delete the temporary object; a failure here is only logged
        (`sweep_temporary` removes what stays)."""
        self._closed = True
        bucket, temp = self._store.bucket, self._temp
        try:
            if self._upload_requested:
                await self._store.abort_uploads(self._client, temp, self._upload_id)
            if self._complete_requested:
                await self._client.delete_object(Bucket=bucket, Key=temp)
        except (BotoCoreError, ClientError) as exc:
            log.warning("blob.discard_failed", key=temp, error=str(exc))

    async def _upload_part(self) -> None:
        if len(self._parts) == self._store.max_parts:
            limit = self._store.max_blob_size
            raise ImportRefused(
                Code.RESOURCE_EXHAUSTED, f"blob exceeds the object store's limit of {limit} bytes"
            )
        part, self._buffer = self._buffer, io.BytesIO()
        with translated():
            if self._upload_id is None:
                self._upload_requested = True
                upload = await self._client.create_multipart_upload(
                    Bucket=self._store.bucket, Key=self._temp
                )
                self._upload_id = upload["UploadId"]
            number = len(self._parts) + 1
            answer = await self._client.upload_part(
                Bucket=self._store.bucket,
                Key=self._temp,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
                ContentMD5=await content_md5(part),
            )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("blob writer is closed")
