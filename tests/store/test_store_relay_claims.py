"""Two workers' outbox relays over one backlog (the broker back after an outage): each row is
published by one of them, once, however their rounds overlap."""

import asyncio
import collections
from collections.abc import Sequence

from bus.base import OutgoingMessage
from bus.outbox_publisher import OutboxPublisher
from runtime.clock import now_us
from store import Database, outbox_table
from store.outbox_table import SentMarker
from tests.store.test_store_outbox import message
from worker.outbox_relay import OutboxRelay

BACKLOG = 1200  # more than one relay batch


class SlowBroker:
    """Confirms every publish after a while, counting each message id it was given."""

    connected = True

    def __init__(self) -> None:
        self.published: collections.Counter[str] = collections.Counter()

    async def publish(self, exchange: str, messages: Sequence[OutgoingMessage]) -> None:
        self.published.update(m.message_id for m in messages)
        await asyncio.sleep(0.05)  # the broker's confirms take this long


async def test_overlapping_relays_publish_each_row_once(db: Database) -> None:
    async with db.transaction() as conn:
        for number in range(BACKLOG):
            await outbox_table.add(conn, message(number), now_us() - 60_000_000)
    broker = SlowBroker()
    relays = []
    for _ in range(2):
        marker = SentMarker(db)
        publisher = OutboxPublisher(broker, marker)  # type: ignore[arg-type]
        relays.append(OutboxRelay(db, publisher, marker, every=1.0, after=5.0))

    sent = await asyncio.gather(*(relay.relay_once() for relay in relays))

    twice = {message_id for message_id, count in broker.published.items() if count > 1}
    assert twice == set(), f"{len(twice)} rows published twice"
    assert len(broker.published) == BACKLOG and sum(sent) == BACKLOG
    async with db.transaction() as conn:
        assert await outbox_table.unsent(conn, now_us(), 10) == []
