"""An in-process broker model: exchanges, queues, routing and dead-lettering."""

import asyncio
import uuid
from collections.abc import Sequence

import msgspec

from bus.base import Delivery, OutgoingMessage
from bus.runner import Outcome
from bus.topology import Binding, ExchangeKind, ExchangeSpec, QueueSpec


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more."""
    return _words_match(pattern.split("."), routing_key.split("."))


def _words_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_words_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _words_match(rest, words[1:])


class Envelope(msgspec.Struct, kw_only=True):
    """A message stored in a queue, with how often it was delivered."""

    message: OutgoingMessage
    exchange: str
    deliveries: int = 0

    def delivery(self, *, counted: bool) -> Delivery:
        """A fresh Delivery, with its own copy of the headers.

        Like RabbitMQ's classic queues, an uncounted queue only tells a first
        delivery (1) from a redelivery (2).
        """
        message = self.message
        return Delivery(
            routing_key=message.routing_key,
            body=message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            content_type=message.content_type,
            type=message.type,
            headers=dict(message.headers),
            redelivered=self.deliveries > 1,
            delivery_count=self.deliveries if counted else min(self.deliveries, 2),
        )


class MemoryQueue:
    """A FIFO of envelopes shared by competing consumers."""

    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self._items: asyncio.Queue[Envelope] = asyncio.Queue()

    @property
    def depth(self) -> int:
        """Messages waiting for a consumer."""
        return self._items.qsize()

    def put(self, envelope: Envelope) -> None:
        """Enqueue `envelope`."""
        self._items.put_nowait(envelope)

    async def take(self) -> Envelope:
        """Wait for the next envelope and count the delivery."""
        envelope = await self._items.get()
        envelope.deliveries += 1
        return envelope


class MemoryExchange:
    """Routes a routing key to the queues whose binding matches it."""

    def __init__(self, kind: ExchangeKind) -> None:
        self.kind = kind
        self._bindings: list[tuple[str, MemoryQueue]] = []

    def bind(self, key: str, queue: MemoryQueue) -> None:
        """Route messages matching `key` to `queue`."""
        self._bindings.append((key, queue))

    def unbind(self, queue: MemoryQueue) -> None:
        """Drop every binding to `queue`."""
        self._bindings = [(key, bound) for key, bound in self._bindings if bound is not queue]

    def route(self, routing_key: str) -> list[MemoryQueue]:
        """The queues a message with `routing_key` goes to, each once."""
        queues = {id(q): q for key, q in self._bindings if self._matches(key, routing_key)}
        return list(queues.values())

    def _matches(self, key: str, routing_key: str) -> bool:
        if self.kind == "fanout":
            return True
        if self.kind == "direct":
            return key == routing_key
        return topic_matches(key, routing_key)


class MemoryBroker:
    """Exchanges and queues of one process; publishing never waits."""

    def __init__(self) -> None:
        self.exchanges: dict[str, MemoryExchange] = {}
        self.queues: dict[str, MemoryQueue] = {}

    def declare(self, exchanges: Sequence[ExchangeSpec], queues: Sequence[QueueSpec]) -> None:
        """Declare the topology; declaring twice keeps what exists."""
        for exchange in exchanges:
            self.exchanges.setdefault(exchange.name, MemoryExchange(exchange.kind))
        for spec in queues:
            if spec.name not in self.queues:
                self.queues[spec.name] = self._bound_queue(spec)

    def private_queue(self, exchange: str, binding_keys: Sequence[str]) -> MemoryQueue:
        """A server-named queue bound to `exchange`, for one subscriber."""
        spec = QueueSpec(
            name=f"amq.gen-{uuid.uuid4().hex}",
            bindings=tuple(Binding(exchange=exchange, key=key) for key in binding_keys),
        )
        return self._bound_queue(spec)

    def delete_queue(self, queue: MemoryQueue) -> None:
        """Unbind `queue`; its messages are dropped with it."""
        for binding in queue.spec.bindings:
            self.exchanges[binding.exchange].unbind(queue)

    def publish(self, exchange: str, message: OutgoingMessage) -> None:
        """Copy `message` into every queue it routes to; unroutable messages are dropped."""
        for queue in self.exchanges[exchange].route(message.routing_key):
            queue.put(Envelope(message=message, exchange=exchange))

    def settle(self, queue: MemoryQueue, envelope: Envelope, outcome: Outcome) -> None:
        """Ack, requeue or dead-letter a delivered envelope."""
        limit = queue.spec.delivery_limit
        if outcome is Outcome.REQUEUE and limit is not None and envelope.deliveries > limit:
            self._dead_letter(queue, envelope, "delivery_limit")
        elif outcome is Outcome.REQUEUE:
            queue.put(envelope)
        elif outcome is Outcome.DEAD_LETTER:
            self._dead_letter(queue, envelope, "rejected")

    def _bound_queue(self, spec: QueueSpec) -> MemoryQueue:
        queue = MemoryQueue(spec)
        for binding in spec.bindings:
            self.exchanges[binding.exchange].bind(binding.key, queue)
        return queue

    def _dead_letter(self, queue: MemoryQueue, envelope: Envelope, reason: str) -> None:
        exchange = queue.spec.dead_letter_exchange
        if exchange is None:
            return
        message = envelope.message
        headers = dict(message.headers)
        if "x-first-death-queue" not in headers:
            headers["x-first-death-exchange"] = envelope.exchange
            headers["x-first-death-queue"] = queue.spec.name
            headers["x-first-death-reason"] = reason
        self.publish(exchange, msgspec.structs.replace(message, headers=headers))
