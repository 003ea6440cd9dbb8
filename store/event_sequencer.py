"""The event log's sequencer, run in every process that writes events: a pass every `every`
seconds, and one on demand for an event stream about to read, so that a stream woken by the
bus finds the event it was woken for (the event was queued before it was published)."""

import asyncio

import structlog

from store import event_log
from store.db import Database, StoreError

log = structlog.get_logger(__name__)


class EventSequencer:
    def __init__(self, db: Database, every: float = 0.25) -> None:
        self._db = db
        self._every = every
        self._turn = asyncio.Lock()
        self._passes = 0

    async def drain(self) -> None:
        """Number every event committed before this call. Concurrent callers share passes:
        one that waited for its turn is done if a pass started after it asked."""
        asked = self._passes
        async with self._turn:
            if self._passes > asked:
                return
            self._passes += 1
            await event_log.sequence(self._db)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.drain()
            except StoreError as exc:
                log.warning("event_log.sequence_failed", error=str(exc))
