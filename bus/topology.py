"""Kiln's exchanges and queues, declared alike by every transport."""

from typing import Literal

import msgspec

from contracts.names import (
    CANCELS_EXCHANGE,
    COMMANDS_EXCHANGE,
    CREATE_QUEUE,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DELETE_QUEUE,
    EVENTS_EXCHANGE,
)

# A message is dead-lettered after DELIVERY_LIMIT + 1 failed deliveries.
# Set explicitly: RabbitMQ 3.x quorum queues have no default limit.
DELIVERY_LIMIT = 5

ExchangeKind = Literal["direct", "topic", "fanout"]


class ExchangeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A durable exchange."""

    name: str
    kind: ExchangeKind


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """Routes messages of `exchange` whose routing key matches `key` to a queue."""

    exchange: str
    key: str


class QueueSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A durable quorum queue and its bindings."""

    name: str
    bindings: tuple[Binding, ...]
    delivery_limit: int | None = None
    dead_letter_exchange: str | None = None

    def arguments(self, quorum_size: int | None) -> dict[str, str | int]:
        """The x-arguments RabbitMQ declares the queue with: replicated on `quorum_size`
        nodes when it is created (RabbitMQ takes every node of a smaller cluster)."""
        arguments: dict[str, str | int] = {"x-queue-type": "quorum"}
        if quorum_size is not None:
            arguments["x-quorum-initial-group-size"] = quorum_size
        if self.delivery_limit is not None:
            arguments["x-delivery-limit"] = self.delivery_limit
        if self.dead_letter_exchange is not None:
            arguments["x-dead-letter-exchange"] = self.dead_letter_exchange
        return arguments


def _command_queue(name: str) -> QueueSpec:
    return QueueSpec(
        name=name,
        bindings=(Binding(exchange=COMMANDS_EXCHANGE, key=name),),
        delivery_limit=DELIVERY_LIMIT,
        dead_letter_exchange=DEAD_LETTER_EXCHANGE,
    )


EXCHANGES: tuple[ExchangeSpec, ...] = (
    ExchangeSpec(name=COMMANDS_EXCHANGE, kind="direct"),
    ExchangeSpec(name=EVENTS_EXCHANGE, kind="topic"),
    ExchangeSpec(name=DEAD_LETTER_EXCHANGE, kind="fanout"),
    # Cancel notices (contracts/notices.py): every worker binds a private queue of its own.
    ExchangeSpec(name=CANCELS_EXCHANGE, kind="fanout"),
)

QUEUES: tuple[QueueSpec, ...] = (
    _command_queue(CREATE_QUEUE),
    _command_queue(DELETE_QUEUE),
    QueueSpec(
        name=DEAD_LETTER_QUEUE,
        bindings=(Binding(exchange=DEAD_LETTER_EXCHANGE, key=""),),
    ),
)
