"""Kiln's message bus: opaque bytes over RabbitMQ, or in-process for `kiln dev`."""

from urllib.parse import urlsplit

from bus.base import (
    Bus,
    BusError,
    BusUnavailable,
    Delivery,
    Handler,
    OutgoingMessage,
    Reject,
    Retry,
    Subscription,
)
from bus.memory import MemoryBus
from bus.rabbit import RabbitBus

__all__ = [
    "Bus",
    "BusError",
    "BusUnavailable",
    "Delivery",
    "Handler",
    "MemoryBus",
    "OutgoingMessage",
    "RabbitBus",
    "Reject",
    "Retry",
    "Subscription",
    "connect_bus",
]


def connect_bus(url: str, *, quorum_size: int = 3) -> Bus:
    """The transport for `url`: `memory://`, or `amqp://` / `amqps://` (with the initial group
    size of the quorum queues it declares); not yet started."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBus()
    if scheme in ("amqp", "amqps"):
        return RabbitBus(url, quorum_size=quorum_size)
    raise ValueError(f"unsupported bus URL scheme {scheme!r}: use memory://, amqp:// or amqps://")
