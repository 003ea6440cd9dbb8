"""MemoryBus: the in-process twin of RabbitBus, for `kiln dev` and tests."""

import asyncio
from collections.abc import Sequence

import msgspec

from bus.base import BusError, BusUnavailable, Handler, OutgoingMessage
from bus.memory_broker import Envelope, MemoryBroker, MemoryQueue
from bus.runner import InFlight, Outcome, check_prefetch, run_handler
from bus.topology import EXCHANGES, QUEUES


class MemorySubscription:
    """Feeds one queue to a handler, at most `prefetch` messages at once."""

    def __init__(
        self,
        broker: MemoryBroker,
        queue: MemoryQueue,
        handler: Handler,
        prefetch: int,
        *,
        private: bool,
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._handler = handler
        self._private = private
        self._slots = asyncio.Semaphore(prefetch)
        self._in_flight = InFlight(queue.spec.name)
        self._intake = asyncio.create_task(self._feed())

    @property
    def stopped(self) -> bool:
        """True once stop was called."""
        return self._intake.done()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop intake, drain in-flight handlers, requeue what is left."""
        if self._intake.done():
            return
        self._intake.cancel()
        await asyncio.gather(self._intake, return_exceptions=True)
        await self._in_flight.drain(timeout)
        if self._private:
            self._broker.delete_queue(self._queue)

    async def _feed(self) -> None:
        while True:
            await self._slots.acquire()
            envelope = await self._queue.take()
            self._in_flight.add(asyncio.create_task(self._handle(envelope)))

    async def _handle(self, envelope: Envelope) -> None:
        # A handler cancelled by stop() is requeued, as a broker requeues unacked messages.
        outcome = Outcome.REQUEUE
        try:
            # Private queues stand in for RabbitMQ's exclusive queues, which are classic.
            delivery = envelope.delivery(counted=not self._private)
            outcome = await run_handler(self._handler, delivery, self._queue.spec.name)
        finally:
            self._broker.settle(self._queue, envelope, outcome)
            self._slots.release()


class MemoryBus:
    """The bus inside one process: same routing, acks, redelivery and dead-lettering."""

    def __init__(self) -> None:
        self._broker = MemoryBroker()
        self._subscriptions: set[MemorySubscription] = set()
        self._open = False

    @property
    def connected(self) -> bool:
        """True between start and close."""
        return self._open

    async def start(self) -> None:
        """Declare the topology."""
        self._broker.declare(EXCHANGES, QUEUES)
        self._open = True

    async def close(self) -> None:
        """Stop every subscription, then refuse publishing."""
        for subscription in list(self._subscriptions):
            await subscription.stop()
        self._open = False

    async def publish(self, exchange: str, messages: Sequence[OutgoingMessage]) -> None:
        """Route a private copy of each message; nothing is lost, so this never waits."""
        self._check_exchange(exchange)
        for message in messages:
            copy = msgspec.structs.replace(
                message, body=bytes(message.body), headers=dict(message.headers)
            )
            self._broker.publish(exchange, copy)

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> MemorySubscription:
        """Consume a declared queue, competing with its other consumers."""
        self._check_open()
        check_prefetch(prefetch)
        target = self._broker.queues.get(queue)
        if target is None:
            raise BusError(f"unknown queue {queue!r}")
        subscription = MemorySubscription(self._broker, target, handler, prefetch, private=False)
        return self._track(subscription)

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each declared queue."""
        self._check_open()
        return {spec.name: self._broker.queues[spec.name].depth for spec in QUEUES}

    async def subscribe(
        self,
        exchange: str,
        binding_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 100,
    ) -> MemorySubscription:
        """Consume a private queue bound to `exchange`; it is deleted on stop."""
        self._check_exchange(exchange)
        check_prefetch(prefetch)
        queue = self._broker.private_queue(exchange, binding_keys)
        subscription = MemorySubscription(self._broker, queue, handler, prefetch, private=True)
        return self._track(subscription)

    def _track(self, subscription: MemorySubscription) -> MemorySubscription:
        # Forget stopped subscriptions so that short-lived subscribers do not pile up.
        self._subscriptions = {s for s in self._subscriptions if not s.stopped}
        self._subscriptions.add(subscription)
        return subscription

    def _check_open(self) -> None:
        if not self._open:
            raise BusUnavailable("memory bus is not started")

    def _check_exchange(self, exchange: str) -> None:
        self._check_open()
        if exchange not in self._broker.exchanges:
            raise BusError(f"unknown exchange {exchange!r}")
