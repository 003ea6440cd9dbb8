"""The reconciler: re-drives every open worker operation whose lease ran out, so no image stays
CREATING or DELETING forever after a worker died or a command was lost."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from bus.outbox_publisher import OutboxPublisher
from contracts.commands import Command, CreateImage, DeleteImage, command_message
from contracts.outbox_message import OutboxMessage
from runtime.clock import now_us
from runtime.metrics import RECONCILER_REDRIVES, TEMPORARY_SWEPT
from store import operations, outbox_table
from store.db import Database
from store.operations import OperationRecord
from worker.blobs import BlobStore, FileBlobStore
from worker.blobs_s3 import S3BlobStore
from worker.config import WorkerConfig, seconds_us

log = structlog.get_logger(__name__)

BATCH = 200
SWEEP_EVERY = 60.0  # seconds between sweeps of temporary files
WRITE_BYTES = 16 << 20  # more than a running import buffers between two writes
_COMMANDS: dict[str, type[Command]] = {
    operations.CREATE: CreateImage,
    operations.DELETE: DeleteImage,
}


def command_row(op: OperationRecord) -> OutboxMessage:
    """The operation's command again, with the id and the request id it was first sent with."""
    command = _COMMANDS[op.kind](
        command_id=op.id, operation_id=op.id, image_id=op.resource_id, request_id=op.request_id
    )
    return command_message(command)


def temporary_max_idle(config: WorkerConfig) -> float:
    """How long a temporary file may go unwritten before it is taken for a killed import's.

    A running import writes whenever it has a buffer's worth (1 MiB on the file store, a part
    of 8 MiB by default on S3): at the minimum rate that is at most WRITE_BYTES / min_rate
    seconds; with no minimum rate, only the import deadline bounds it."""
    longest_gap = WRITE_BYTES / config.min_rate if config.min_rate else config.deadline
    return max(300.0, 10 * config.lease_seconds, 10 * config.idle_timeout, 2 * longest_gap)


def sweep_temporary(tmp_dir: Path, max_age: float) -> int:
    """Remove temporary blob files not written for `max_age` seconds (left by a killed
    import)."""
    # The database's clock, not this host's (runtime/clock.py): a shared directory's mtimes are
    # its server's, which a worker whose clock runs fast would otherwise take for old.
    cutoff, removed = now_us() / 1_000_000 - max_age, 0
    for path in tmp_dir.glob("blob-*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def temporary_sweeper(blobs: BlobStore, max_age: float) -> Callable[[], Awaitable[int]] | None:
    """How to remove what killed imports left in `blobs`: temporary files, or temporary objects
    and unfinished multipart uploads."""
    if isinstance(blobs, FileBlobStore):
        tmp_dir = blobs.root / "tmp"
        return lambda: asyncio.to_thread(sweep_temporary, tmp_dir, max_age)
    if isinstance(blobs, S3BlobStore):
        return lambda: blobs.sweep_temporary(max_age)
    return None


class Reconciler:
    def __init__(
        self,
        db: Database,
        publisher: OutboxPublisher,
        config: WorkerConfig,
        sweep: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        """`sweep` removes the blob store's orphaned temporary files (how many)."""
        self._db = db
        self._publisher = publisher
        self._every = config.reconcile_every
        self._grace_us = seconds_us(config.pending_grace)
        self._sweep = sweep

    async def run(self) -> None:
        """Reconcile every period, and sweep orphaned temporary files every SWEEP_EVERY
        seconds (at once too), until cancelled."""
        swept_at = -SWEEP_EVERY
        while True:
            if time.monotonic() - swept_at >= SWEEP_EVERY:
                swept_at = time.monotonic()
                await self._sweep_temporary()
            try:
                await self.reconcile_once()
            except Exception:
                log.exception("reconciler.failed")
            await asyncio.sleep(self._every)

    async def _sweep_temporary(self) -> None:
        if self._sweep is None:
            return
        try:
            removed = await self._sweep()
        except Exception as exc:
            log.warning("reconciler.sweep_failed", error=repr(exc))
            return
        TEMPORARY_SWEPT.inc(removed)
        if removed:
            log.info("reconciler.swept", temporary_files=removed)

    async def reconcile_once(self) -> int:
        """Re-publish the command of every expired worker operation; how many were re-driven."""
        now, rows, kinds = now_us(), [], []
        async with self._db.transaction() as conn:
            for op in await operations.expired(conn, now, BATCH):
                if op.kind not in _COMMANDS:
                    continue
                # Compare-and-set: of several reconcilers, one re-drives the operation.
                if await operations.defer_lease(conn, op.id, op.lease_until, now + self._grace_us):
                    rows.append(await outbox_table.add(conn, command_row(op), now))
                    kinds.append(op.kind)
                    log.warning(
                        "reconciler.redrive",
                        operation_id=op.id,
                        image_id=op.resource_id,
                        request_id=op.request_id,
                        kind=op.kind,
                        lease_owner=op.lease_owner,
                    )
        for kind in kinds:
            RECONCILER_REDRIVES.labels(kind=kind).inc()
        await self._publisher.publish(rows)
        return len(rows)
