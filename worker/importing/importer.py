"""Carrying out a create's import from its source: a URL, another image, or an operator's disk
source (worker/importing/disk_sources.py)."""

import asyncio

import msgspec
import structlog

from contracts.commands import CreateParams
from contracts.enums import ImageStatus
from contracts.errors import Code
from lifecycle.changes import Imported
from store import images
from store.db import Database
from store.images import ImageSpec
from worker.blobs import BlobStore
from worker.errors import ImportRefused
from worker.importing.disk_sources import DiskKind, DiskSource
from worker.importing.fetch import FetchPolicy, SourceClient
from worker.importing.pipeline import import_from_url

log = structlog.get_logger(__name__)


class Importer:
    """Carries out one create's import; raises ImportRefused or SourceUnavailable."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        policy: FetchPolicy,
        disks: DiskSource | None,
        fetches: int,
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._policy = policy
        self._disks = disks
        self._client = SourceClient()
        self._fetches = asyncio.Semaphore(fetches)  # streams at once: bounds the memory

    async def close(self) -> None:
        await self._client.close()

    async def run(self, params: CreateParams, folder_id: str) -> Imported:
        """`folder_id`: the folder of the image being created, whose disks it may read."""
        source, requested = params.source, params.requested_min_disk_size
        if source.image_id:
            return await self._copy(source.image_id, requested)
        if source.disk_id:
            return await self._from_disk(folder_id, "disk", source.disk_id, requested)
        if source.snapshot_id:
            return await self._from_disk(folder_id, "snapshot", source.snapshot_id, requested)
        if source.uri:
            return await self._fetch(source.uri, self._policy, requested)
        raise ImportRefused(Code.INVALID_ARGUMENT, "the create names no source")

    async def _fetch(self, url: str, policy: FetchPolicy, requested: int) -> Imported:
        async with self._fetches:
            result = await import_from_url(url, policy, self._blobs, self._client)
        return Imported(
            digest=result.digest,
            size=result.virtual_size,
            storage_size=result.stored_bytes,
            requested_min_disk_size=requested,
        )

    async def _from_disk(
        self, folder_id: str, kind: DiskKind, source_id: str, requested: int
    ) -> Imported:
        if self._disks is None:
            raise ImportRefused(
                Code.FAILED_PRECONDITION, f"no disk source is configured: cannot import a {kind}"
            )
        resolved = await self._disks.resolve(folder_id, kind, source_id)
        policy = msgspec.structs.replace(self._policy, import_root=resolved.import_root)
        return await self._fetch(resolved.url, policy, requested)

    async def _copy(self, image_id: str, requested: int) -> Imported:
        """Share the source's stored bytes: nothing is copied."""
        async with self._db.transaction() as conn:
            source = await images.get(conn, image_id)
        if source is None:
            raise ImportRefused(Code.NOT_FOUND, f"source image {image_id} not found")
        if source.status is not ImageStatus.READY or not source.blob_digest:
            raise ImportRefused(
                Code.FAILED_PRECONDITION,
                f"source image {image_id} is {source.status.value}, not READY",
            )
        log.info("image.copy", source_image_id=image_id, digest=source.blob_digest)
        spec = source.spec
        return Imported(
            digest=source.blob_digest,
            size=source.size,
            storage_size=source.storage_size,
            requested_min_disk_size=max(requested, source.min_disk_size),
            copied_from=source.id,
            inherit=ImageSpec(
                os=spec.os,
                product_ids=spec.product_ids,
                hardware_generation=spec.hardware_generation,
            ),
        )
