"""The blob store a storage URL names: `file:///path` or `s3://bucket/prefix`."""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from worker.blobs import BlobStore, FileBlobStore
from worker.blobs_s3 import S3BlobStore, S3Settings

SCHEMES = ("file://", "s3://")


def blob_store_from_url(url: str, s3: S3Settings | None = None) -> BlobStore:
    """The store for `url`; `s3` (endpoint, region, credentials) is used for s3:// only.

    An S3 store opens its client on first use: close it with `close()`, or use
    `opened_blob_store`.
    """
    if url.startswith("file://"):
        path = url.removeprefix("file://")
        if not path.startswith("/"):
            raise ValueError(f"storage URL needs an absolute path: {url!r}")
        return FileBlobStore(Path(path))
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"storage URL names no bucket: {url!r}")
        return S3BlobStore(bucket, prefix, s3 or S3Settings())
    raise ValueError(f"storage URL must start with one of {', '.join(SCHEMES)}: {url!r}")


@contextlib.asynccontextmanager
async def opened_blob_store(url: str, s3: S3Settings | None = None) -> AsyncIterator[BlobStore]:
    """The store for `url`, closed on exit (a cleanup context for the worker)."""
    store = blob_store_from_url(url, s3)
    try:
        yield store
    finally:
        if isinstance(store, S3BlobStore):
            await store.close()
