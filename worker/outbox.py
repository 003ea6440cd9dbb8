"""The worker's side of the transactional outbox: publish committed rows at once, and a relay
that publishes rows left unsent (a crash, or the broker away, between commit and publish)."""

import asyncio
from collections.abc import Sequence

import structlog

from bus.base import Bus, BusUnavailable
from bus.outbox import publish_outbox
from contracts.outbox import OutboxMessage
from store import outbox
from store.clock import now_us
from store.db import Database, StoreError
from worker.config import seconds_us

log = structlog.get_logger(__name__)

RELAY_BATCH = 500


async def publish_committed(db: Database, bus: Bus, messages: Sequence[OutboxMessage]) -> bool:
    """Publish rows already committed and mark them sent; False when they were left for the
    relay. Never raises for a broker or store outage: the state change is already durable."""
    if not messages:
        return True
    try:
        await publish_outbox(bus, messages)
    except BusUnavailable as exc:
        log.warning("outbox.deferred", rows=len(messages), error=str(exc))
        return False
    try:
        async with db.transaction() as conn:
            await outbox.mark_sent(conn, [message.seq for message in messages], now_us())
    except StoreError as exc:
        # The relay will publish them again; consumers dedupe by message id.
        log.warning("outbox.mark_sent_failed", rows=len(messages), error=str(exc))
    return True


class OutboxRelay:
    """Every `every` seconds, publishes the rows unsent for longer than `after` seconds."""

    def __init__(self, db: Database, bus: Bus, *, every: float, after: float) -> None:
        self._db = db
        self._bus = bus
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
            async with self._db.transaction() as conn:
                rows = await outbox.unsent(conn, now_us() - self._after_us, RELAY_BATCH)
            if not rows or not await publish_committed(self._db, self._bus, rows):
                break
            sent += len(rows)
            log.info("outbox.relayed", rows=len(rows))
            if len(rows) < RELAY_BATCH:
                break
        return sent
