"""Declaring Kiln's exchanges and queues on RabbitMQ, on a channel of its own: a refused
declaration closes the channel it was made on, never one that publishes or consumes."""

import re

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import ChannelPreconditionFailed
from pamqp.common import FieldTable

from bus.rabbit_consumer import close_quietly
from bus.topology import EXCHANGES, QUEUES, QueueSpec

log = structlog.get_logger(__name__)

GROUP_SIZE = "x-quorum-initial-group-size"
# RabbitMQ's words when a queue exists with other arguments (rabbit_misc:assert_args_equivalence).
_GROUP_SIZE_DIFFERS = re.compile(rf"inequivalent arg '{GROUP_SIZE}'.* current is '?(\w+)'?")


async def declare_topology(connection: AbstractConnection, quorum_size: int) -> None:
    """Declare every exchange, queue and binding (again: declarations are idempotent)."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        for exchange in EXCHANGES:
            kind = aio_pika.ExchangeType(exchange.kind)
            await channel.declare_exchange(exchange.name, kind, durable=True)
        for spec in QUEUES:
            channel = await _declare_queue(connection, channel, spec, quorum_size)
    finally:
        await close_quietly(channel)


async def _declare_queue(
    connection: AbstractConnection, channel: AbstractChannel, spec: QueueSpec, quorum_size: int
) -> AbstractChannel:
    """Declare `spec` and its bindings; the channel to go on with.

    The initial group size matters only when a queue is created, but RabbitMQ refuses a
    declaration whose size differs from the one the queue was created with (or lacks, when
    it was created before Kiln set one). The queue is then declared again with its own."""
    try:
        queue = await channel.declare_queue(
            spec.name, durable=True, arguments=_field_table(spec, quorum_size)
        )
    except ChannelPreconditionFailed as exc:
        existing = _GROUP_SIZE_DIFFERS.search(str(exc))
        if existing is None:
            raise
        size = None if existing.group(1) == "none" else int(existing.group(1))
        log.info("bus.queue_group_size_kept", queue=spec.name, size=size, asked=quorum_size)
        channel = await connection.channel(publisher_confirms=False)
        queue = await channel.declare_queue(
            spec.name, durable=True, arguments=_field_table(spec, size)
        )
    for binding in spec.bindings:
        await queue.bind(binding.exchange, binding.key)
    return channel


def _field_table(spec: QueueSpec, quorum_size: int | None) -> FieldTable:
    return dict(spec.arguments(quorum_size))
