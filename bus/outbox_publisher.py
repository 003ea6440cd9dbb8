"""Publishing committed outbox rows: the store-agnostic half of the transactional outbox."""

import itertools
from collections.abc import Sequence
from typing import Protocol

import structlog

from bus.base import Bus, BusUnavailable, OutgoingMessage
from contracts.outbox_message import OutboxMessage

log = structlog.get_logger(__name__)


def outgoing(message: OutboxMessage) -> OutgoingMessage:
    return OutgoingMessage(
        routing_key=message.routing_key,
        body=message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id or None,
        content_type=message.content_type,
        type=message.type or None,
    )


async def publish_outbox(bus: Bus, messages: Sequence[OutboxMessage]) -> None:
    """Publish every message, one pipelined confirm batch per exchange.

    Raises BusUnavailable when any is not confirmed; the caller then leaves the rows unsent
    for the relay (delivery is at-least-once, consumers dedupe by message id).
    """
    by_exchange = itertools.groupby(
        sorted(messages, key=lambda m: (m.exchange, m.seq)), key=lambda m: m.exchange
    )
    for exchange, group in by_exchange:
        await bus.publish(exchange, [outgoing(message) for message in group])


class SentMarks(Protocol):
    """Where published rows go to be marked sent (the store's batching marker)."""

    def mark(self, seqs: Sequence[int]) -> None: ...


class OutboxPublisher:
    """Publishes committed outbox rows at once; the rows the broker confirmed are handed to
    `marks`. Never raises for a broker outage: the state change is already durable, and
    unconfirmed rows stay unsent for the relay."""

    def __init__(self, bus: Bus, marks: SentMarks) -> None:
        self.bus = bus
        self._marks = marks

    async def publish(self, messages: Sequence[OutboxMessage]) -> bool:
        """False when the rows were left for the relay."""
        if not messages:
            return True
        try:
            await publish_outbox(self.bus, messages)
        except BusUnavailable as exc:
            log.warning("outbox.deferred", rows=len(messages), error=str(exc))
            return False
        self._marks.mark([message.seq for message in messages])
        return True
