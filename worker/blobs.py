"""Content-addressed blob store: bytes are written under a temporary name, fsynced and renamed
to their sha256, so a blob is either complete or absent."""

import asyncio
import errno
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec

from worker.errors import BlobStoreUnavailable

_DIGEST = re.compile(r"[0-9a-f]{64}")
_REFUSED_WRITES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
# Free space below which a full blob store is still taken for full: an import waiting for room
# is not run again (and its source downloaded again) for a few free blocks.
MIN_FREE_BYTES = 16 << 20


class BlobRef(msgspec.Struct, frozen=True, kw_only=True):
    digest: str
    size: int


class BlobWriter(Protocol):
    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> BlobRef: ...


class BlobStore(Protocol):
    """Where image bytes live; leaving `blob_writer()` without `commit()` stores nothing."""

    def blob_writer(self) -> AbstractAsyncContextManager[BlobWriter]: ...

    async def exists(self, digest: str) -> bool: ...

    async def delete(self, digest: str) -> None: ...

    async def writable(self) -> bool:
        """Whether writes may succeed again after the store refused them."""
        ...


class FileBlobWriter:
    """Hashes and writes in a worker thread, up to `BUFFER` bytes per thread hop (a small image
    reaches the thread once, at commit). The temporary file is created there too, on the first
    hop: creating a file can wait on the filesystem's journal while other imports fsync, and the
    event loop must not wait with it. The lock orders `discard` with a hop that a cancelled task
    left running: a file created before `discard` is removed by it, none is created after."""

    BUFFER = 1 << 20

    def __init__(self, store: "FileBlobStore") -> None:
        self._store = store
        self._file: BinaryIO | None = None
        self._temp: Path | None = None
        self._discarded = False
        self._hash = hashlib.sha256()
        self._size = 0
        self._lock = threading.Lock()
        self._buffered: list[bytes] = []
        self._buffered_size = 0

    @property
    def _closed(self) -> bool:
        return self._discarded or (self._file is not None and self._file.closed)

    async def write(self, chunk: bytes) -> None:
        if self._closed:
            raise ValueError("blob writer is closed")
        self._buffered.append(chunk)
        self._buffered_size += len(chunk)
        if self._buffered_size >= self.BUFFER:
            with self._store.refusing():
                await asyncio.to_thread(self._write, self._take_buffered())

    async def commit(self) -> BlobRef:
        with self._store.refusing():
            return await asyncio.to_thread(self._commit, self._take_buffered())

    def _take_buffered(self) -> list[bytes]:
        chunks, self._buffered, self._buffered_size = self._buffered, [], 0
        return chunks

    def discard(self) -> None:
        with self._lock:
            self._discarded = True
            if self._file is not None:
                self._file.close()
            if self._temp is not None:
                self._temp.unlink(missing_ok=True)

    def _open(self) -> tuple[BinaryIO, Path]:
        """The temporary file and its path, created on first use; the caller holds the lock."""
        if self._closed:
            raise ValueError("blob writer is closed")
        if self._file is None or self._temp is None:
            self._file, self._temp = self._store.open_temp()
        return self._file, self._temp

    def _write(self, chunks: list[bytes]) -> None:
        with self._lock:
            file, _ = self._open()
            for chunk in chunks:
                self._hash.update(chunk)
                file.write(chunk)
                self._size += len(chunk)

    def _commit(self, chunks: list[bytes]) -> BlobRef:
        self._write(chunks)
        with self._lock:
            file, temp = self._open()
            file.flush()
            os.fsync(file.fileno())
            file.close()
            ref = BlobRef(digest=self._hash.hexdigest(), size=self._size)
            self._store.place(temp, ref.digest)
            # Nothing is left for `discard` to remove: its unlink would run on the event loop
            # and wait for the temporary directory while other imports create files in it.
            self._temp = None
        return ref


class FileBlobStore:
    """Blobs at `root/sha256/<2 hex>/<digest>`, temporary files in `root/tmp`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"

    def path(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / "sha256" / digest[:2] / digest

    @asynccontextmanager
    async def blob_writer(self) -> AsyncIterator[FileBlobWriter]:
        writer = FileBlobWriter(self)
        try:
            yield writer
        finally:
            # Synchronous so that it completes even while the task is being cancelled.
            writer.discard()

    async def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()  # a local stat: cheaper than a thread hop

    async def writable(self) -> bool:
        """Whether the filesystem has room for writes again (a local statvfs)."""
        existing = next(p for p in (self.root, *self.root.parents) if p.exists())
        fs = os.statvfs(existing)
        return not fs.f_flag & os.ST_RDONLY and fs.f_bavail * fs.f_frsize >= MIN_FREE_BYTES

    @contextmanager
    def refusing(self) -> Iterator[None]:
        """A full, over-quota or read-only filesystem as the worker's "wait for it" error."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in _REFUSED_WRITES:
                raise
            raise BlobStoreUnavailable(f"blob store {self.root}: {exc.strerror}") from exc

    async def delete(self, digest: str) -> None:
        await asyncio.to_thread(self.path(digest).unlink, missing_ok=True)

    def place(self, temp: Path, digest: str) -> None:
        """Move a fsynced temporary file to its digest, or remove it if that blob exists."""
        final = self.path(digest)
        if final.exists():
            temp.unlink()
            return
        _make_dirs(final.parent)
        os.replace(temp, final)
        _fsync_dir(final.parent)

    def open_temp(self) -> tuple[BinaryIO, Path]:
        """A new temporary file (blocking: called from a worker thread)."""
        _make_dirs(self._tmp)
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="blob-", suffix=".part")
        return os.fdopen(fd, "wb"), Path(name)


def _make_dirs(path: Path) -> None:
    """Create missing directories and fsync each new entry into its parent."""
    if path.is_dir():
        return
    _make_dirs(path.parent)
    path.mkdir(exist_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
