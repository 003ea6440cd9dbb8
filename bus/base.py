"""The bus port: messages, handler outcomes and the transport protocol."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec


class OutgoingMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message to publish; the body is opaque bytes."""

    routing_key: str
    body: bytes
    message_id: str
    correlation_id: str | None = None
    content_type: str = "application/json"
    type: str | None = None
    headers: dict[str, str] = {}


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """A message handed to a handler.

    `delivery_count` is 1 on the first delivery and grows with each redelivery
    on the declared (quorum) queues; on `subscribe` queues it stops at 2.
    `headers` carries string-valued headers only.
    """

    routing_key: str
    body: bytes
    message_id: str
    correlation_id: str | None = None
    content_type: str = "application/json"
    type: str | None = None
    headers: dict[str, str] = {}
    redelivered: bool = False
    delivery_count: int = 1


class BusError(Exception):
    """Root of every error the bus raises."""


class Retry(BusError):
    """Raised by a handler to have the message redelivered later."""


class Reject(BusError):
    """Raised by a handler to give up on the message: it is dead-lettered."""


class BusUnavailable(BusError):
    """The broker cannot be reached or did not confirm; retry later or answer 503."""


Handler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    """A running consumer."""

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop intake, wait up to `timeout` for in-flight handlers, requeue the rest."""
        ...


class Bus(Protocol):
    """A message transport: confirmed publishing and acknowledged consuming."""

    @property
    def connected(self) -> bool:
        """Whether publishing can be attempted now."""
        ...

    async def start(self) -> None:
        """Connect and declare the topology."""
        ...

    async def close(self) -> None:
        """Stop every subscription, then disconnect."""
        ...

    async def publish(self, exchange: str, messages: Sequence[OutgoingMessage]) -> None:
        """Publish all messages; return once the broker confirmed every one.

        Raises BusUnavailable when any message is not confirmed.
        """
        ...

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> Subscription:
        """Run `handler` for messages of a declared queue, at most `prefetch` at once, except
        that handlers outlive a channel the broker closes (RabbitMQ), and the messages of the
        channel that replaces it come on top of them."""
        ...

    async def queue_depths(self) -> dict[str, int]:
        """Messages ready (not handed to a consumer) in each declared queue, by name."""
        ...

    async def subscribe(
        self,
        exchange: str,
        binding_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 100,
    ) -> Subscription:
        """Run `handler` for messages routed by `binding_keys` to a private queue."""
        ...
