"""What a worker measures (the series are defined in `runtime.metrics`): import attempts, and
the gauges a poller keeps fresh (queue depths, outbox backlog and age). Redeliveries are
counted as commands are consumed (worker/handlers.py), finished operations from the
transitions' results (worker/committer.py)."""

import asyncio
import time
from types import TracebackType
from typing import TypeVar

import structlog

from bus.base import Bus
from contracts.commands import ImageSource
from lifecycle.changes import Imported
from runtime.clock import now_us
from runtime.metrics import (
    CANCELLED,
    ERROR,
    IMPORT_DURATION,
    IMPORT_SIZE,
    IMPORTS_IN_FLIGHT,
    OK,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    QUEUE_DEPTH,
)
from store import outbox_table
from store.db import Database
from worker.leases import Interruption

log = structlog.get_logger(__name__)

POLL_SECONDS = 5.0
INTERRUPTED = "interrupted"  # an import stopped by shutdown or a lost lease: it runs again
T = TypeVar("T")


def source_kind(source: ImageSource) -> str:
    if source.image_id:
        return "image"
    if source.disk_id:
        return "disk"
    if source.snapshot_id:
        return "snapshot"
    return "uri"


class ImportAttempt:
    """Times one import attempt and keeps `kiln_imports_in_flight` while it runs; `outcome`
    records how it ended (an exception leaving the block counts as an error)."""

    def __init__(self, source: ImageSource) -> None:
        self._source = source_kind(source)
        self._result: str | None = None
        self._started = 0.0

    def __enter__(self) -> "ImportAttempt":
        IMPORTS_IN_FLIGHT.inc()
        self._started = time.perf_counter()
        return self

    def outcome(self, outcome: T) -> T:
        if isinstance(outcome, Imported):
            self._result = OK
            if not outcome.copied_from:  # a copy shares bytes: nothing was imported
                IMPORT_SIZE.labels(source=self._source).observe(outcome.storage_size)
        else:
            self._result = CANCELLED if outcome is Interruption.CANCELLED else INTERRUPTED
        return outcome

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        IMPORTS_IN_FLIGHT.dec()
        result = self._result or (ERROR if isinstance(error, Exception) else INTERRUPTED)
        elapsed = time.perf_counter() - self._started
        IMPORT_DURATION.labels(source=self._source, result=result).observe(elapsed)


async def poll_gauges(db: Database, bus: Bus, every: float = POLL_SECONDS) -> None:
    """Keep the queue depth and outbox gauges fresh until cancelled; failures are logged."""
    while True:
        try:
            await observe_once(db, bus)
        except Exception as exc:
            log.warning("metrics.poll_failed", error=repr(exc))
        await asyncio.sleep(every)


async def observe_once(db: Database, bus: Bus) -> None:
    async with db.transaction() as conn:
        backlog = await outbox_table.backlog(conn)
        oldest = await outbox_table.oldest_unsent(conn)
    OUTBOX_BACKLOG.set(backlog)
    OUTBOX_OLDEST_AGE.set(0 if oldest is None else max(0, now_us() - oldest) / 1_000_000)
    if bus.connected:
        for queue, depth in (await bus.queue_depths()).items():
            QUEUE_DEPTH.labels(queue=queue).set(depth)
