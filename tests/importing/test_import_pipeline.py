"""The whole pass: cancellation leaves nothing, memory stays flat, disk sizes round up."""

import asyncio
import resource
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from contracts.images import min_disk_size
from worker.blobs import FileBlobStore, FileBlobWriter
from worker.importing.fetch import FetchPolicy
from worker.importing.pipeline import import_from_url

MiB = 1 << 20


class SignallingStore(FileBlobStore):
    """A file store that tells the test once bytes have reached a temporary file (the writer
    creates it when it first hands bytes to its thread)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.written = asyncio.Event()

    @asynccontextmanager
    async def blob_writer(self) -> AsyncIterator[FileBlobWriter]:
        async with super().blob_writer() as writer:
            real_write = writer.write

            async def write(chunk: bytes) -> None:
                await real_write(chunk)
                if any((self.root / "tmp").glob("*")):
                    self.written.set()

            writer.write = write  # type: ignore[method-assign]
            yield writer


async def test_cancelling_mid_stream_leaves_no_temporary_file(
    raw_server: Callable[..., Awaitable[str]],
    policy: FetchPolicy,
    blob_root: Path,
    stored: Callable[[], list[Path]],
) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n" + bytes(2 * MiB))
        await writer.drain()
        await reader.read()  # until the client hangs up

    url = await raw_server(trickle)
    blobs = SignallingStore(blob_root)
    task = asyncio.create_task(import_from_url(url, policy, blobs))
    await blobs.written.wait()
    assert len(stored()) == 1

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert stored() == []


async def test_a_refused_file_import_leaves_nothing(
    policy: FetchPolicy, blobs: FileBlobStore, images: Path, stored: Callable[[], list[Path]]
) -> None:
    with pytest.raises(Exception, match="backing file"):
        await import_from_url(f"file://{images / 'backing.qcow2'}", policy, blobs)

    assert stored() == []


async def test_memory_stays_flat_for_a_256_mib_image(
    source, policy: FetchPolicy, blobs: FileBlobStore
) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        result = await import_from_url(source.url("/img/sparse256.raw"), policy, blobs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before

    assert (result.format, result.virtual_size, result.stored_bytes) == (
        "raw",
        256 * MiB,
        256 * MiB,
    )
    assert peak < 50 * MiB
    assert rss_growth < 50 * MiB


@pytest.mark.parametrize(
    ("requested", "virtual_size", "expected"),
    [
        (0, 0, 0),
        (0, 1, 4 * MiB),
        (0, 4 * MiB, 4 * MiB),
        (0, 4 * MiB + 1, 8 * MiB),
        (10 * MiB, 4 * MiB, 12 * MiB),
        (3 * MiB, 16 * MiB, 16 * MiB),
    ],
)
def test_min_disk_size_is_the_larger_size_rounded_up_to_4_mib(
    requested: int, virtual_size: int, expected: int
) -> None:
    assert min_disk_size(requested, virtual_size) == expected
