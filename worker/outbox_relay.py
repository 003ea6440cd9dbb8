"""The outbox relay: publishes rows left unsent (a crash, or the broker away, between commit
and publish). Every worker runs one; each claims the rows it publishes, so that when the
broker comes back they do not all publish the same backlog."""

import asyncio

import structlog

from bus.base import BusUnavailable
from bus.outbox_publisher import OutboxPublisher
from runtime.clock import now_us
from store import outbox_table
from store.db import Database, StoreError
from store.outbox_table import SentMarker
from worker.config import seconds_us

log = structlog.get_logger(__name__)

RELAY_BATCH = 500
# How long a relay holds the rows it claimed: another relay takes them after that, should
# this one die before they are published and marked sent.
CLAIM_US = 30 * 1_000_000


class OutboxRelay:
    """Every `every` seconds, publishes the rows unsent for longer than `after` seconds."""

    def __init__(
        self,
        db: Database,
        publisher: OutboxPublisher,
        marker: SentMarker,
        *,
        every: float,
        after: float,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._marker = marker
        self._every = every
        self._after_us = seconds_us(after)

    async def run(self) -> None:
        """Relay until cancelled; an outage is logged and retried on the next round."""
        while True:
            try:
                await self.relay_once()
            except (StoreError, BusUnavailable) as exc:
                log.warning("outbox.relay_failed", error=str(exc))
            except Exception:
                log.exception("outbox.relay_crashed")
            await asyncio.sleep(self._every)

    async def relay_once(self) -> int:
        """Publish what is overdue now, batch after batch; how many rows were sent."""
        sent = 0
        while True:
            now = now_us()
            async with self._db.transaction() as conn:
                rows = await outbox_table.claim_unsent(
                    conn, now - self._after_us, now, now + CLAIM_US, RELAY_BATCH
                )
            if not rows or not await self._publisher.publish(rows):
                break
            await self._marker.flush()  # sent before the claim runs out, or it is published again
            sent += len(rows)
            log.info("outbox.relayed", rows=len(rows))
            if len(rows) < RELAY_BATCH:
                break
        return sent
