"""Publishing committed outbox rows: the store-agnostic half of the transactional outbox."""

import itertools
from collections.abc import Sequence

from bus.base import Bus, OutgoingMessage
from contracts.outbox import OutboxMessage


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
