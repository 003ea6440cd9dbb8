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
        self._started = 0  # passes begun
        self._completed = 0  # the number of the last pass that ended well

    async def drain(self) -> None:
        """Number every event committed before this call. Concurrent callers share passes:
        one that waited for its turn is done if a pass begun after it asked ended well."""
        asked = self._started
        async with self._turn:
            if self._completed > asked:
                return
            self._started += 1
            number = self._started
            await event_log.sequence(self._db)
            self._completed = number

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.drain()
            except StoreError as exc:
                log.warning("event_log.sequence_failed", error=str(exc))
            except Exception:  # the next pass tries again; this loop must not end
                log.exception("event_log.sequence_failed")
