"""What a blob store test needs to look behind a store: its content, and everything it left."""

from pathlib import Path
from typing import Protocol

from worker.blobs import BlobStore, FileBlobStore
from worker.blobs_s3 import Client, S3BlobStore

MiB = 1 << 20
PART = 8 * MiB  # the S3 store's part size in these tests


class Backend(Protocol):
    """A store under test, and what a test needs to look behind it."""

    store: BlobStore

    async def read(self, digest: str) -> bytes: ...

    async def stored(self) -> list[str]:
        """Every blob, temporary file or object, and unfinished upload, relative to the root."""
        ...


class FileBackend:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = FileBlobStore(root)

    async def read(self, digest: str) -> bytes:
        return self.store.path(digest).read_bytes()

    async def stored(self) -> list[str]:
        files = (p for p in self.root.rglob("*") if p.is_file())
        return sorted(str(p.relative_to(self.root)) for p in files)


class S3Backend:
    def __init__(self, store: S3BlobStore, client: Client) -> None:
        self.store = store
        self._client = client
        self._bucket = store.bucket
        self._prefix = store.prefix + "/"

    async def read(self, digest: str) -> bytes:
        answer = await self._client.get_object(Bucket=self._bucket, Key=self.store.key(digest))
        async with answer["Body"] as body:
            return bytes(await body.read())

    async def stored(self) -> list[str]:
        objects = await self._client.list_objects_v2(Bucket=self._bucket, Prefix=self._prefix)
        uploads = await self._client.list_multipart_uploads(
            Bucket=self._bucket, Prefix=self._prefix
        )
        keys = [o["Key"] for o in objects.get("Contents", [])]
        keys += ["upload:" + u["Key"] for u in uploads.get("Uploads", [])]
        return sorted(k.replace(self._prefix, "", 1) for k in keys)
