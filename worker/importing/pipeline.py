"""One streaming pass from a source URL through format inspection and sha256 into the blob store."""

import msgspec
import structlog

from worker.blobs import BlobStore
from worker.importing.fetch import FetchPolicy, SourceClient, open_source
from worker.importing.inspect import StreamInspector

log = structlog.get_logger(__name__)


class ImportResult(msgspec.Struct, frozen=True, kw_only=True):
    digest: str
    virtual_size: int
    stored_bytes: int
    format: str


async def import_from_url(
    url: str, policy: FetchPolicy, blobs: BlobStore, client: SourceClient | None = None
) -> ImportResult:
    """Fetch, inspect, hash and store an image; on any error or cancellation nothing is stored.

    Raises ImportRefused (permanent) or SourceUnavailable (retry the command later).
    """
    inspector = StreamInspector()
    async with open_source(url, policy, client) as chunks, blobs.blob_writer() as writer:
        async for chunk in chunks:
            inspector.feed(chunk)
            await writer.write(chunk)
        inspection = inspector.finish()
        blob = await writer.commit()
    log.info("image.imported", digest=blob.digest, format=inspection.format, size=blob.size)
    return ImportResult(
        digest=blob.digest,
        virtual_size=inspection.virtual_size,
        stored_bytes=blob.size,
        format=inspection.format,
    )
