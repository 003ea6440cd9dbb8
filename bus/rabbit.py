"""RabbitBus: the bus on RabbitMQ through aio-pika's robust connection."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
from aio_pika.abc import (
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from bus.base import BusError, BusUnavailable, Handler, OutgoingMessage
from bus.rabbit_consumer import RabbitSubscription, to_amqp, transient
from bus.runner import check_prefetch
from bus.topology import EXCHANGES, QUEUES

_QUEUE_SPECS = {spec.name: spec for spec in QUEUES}

_DeclareQueue = Callable[[AbstractRobustChannel], Awaitable[AbstractRobustQueue]]


class RabbitBus:
    """Confirmed publishing on one channel, each consumer on a channel of its own."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        """`timeout` bounds connecting and waiting for the confirms of one publish."""
        self._url = url
        self._timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        # Robust objects are weakly held by aio-pika: without these references
        # they would not be restored after a reconnect.
        self._exchanges: dict[str, AbstractRobustExchange] = {}
        self._queues: dict[str, AbstractRobustQueue] = {}
        self._subscriptions: set[RabbitSubscription] = set()

    @property
    def connected(self) -> bool:
        """True while the connection and the publishing channel are open."""
        connection, channel = self._connection, self._channel
        return (
            connection is not None
            and connection.connected.is_set()
            and channel is not None
            and not channel.is_closed
        )

    async def start(self) -> None:
        """Connect, open the publishing channel and declare the topology."""
        if self._connection is not None:
            return
        try:
            with transient("connect to the broker"):
                self._connection = await aio_pika.connect_robust(self._url, timeout=self._timeout)
                self._channel = await self._connection.channel(publisher_confirms=True)
                await self._declare(self._channel)
        except BusError:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the subscriptions, then close the publishing channel and the connection."""
        for subscription in list(self._subscriptions):
            await subscription.stop()
        self._subscriptions.clear()
        channel, connection = self._channel, self._connection
        self._channel, self._connection = None, None
        self._exchanges.clear()
        self._queues.clear()
        with contextlib.suppress(*CONNECTION_EXCEPTIONS):
            if channel is not None:
                await channel.close()
            if connection is not None:
                await connection.close()

    async def publish(self, exchange: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message, then wait for all the confirms together."""
        target = self._exchange(exchange)
        try:
            async with asyncio.timeout(self._timeout):
                results = await asyncio.gather(
                    *(
                        target.publish(to_amqp(message), message.routing_key, mandatory=False)
                        for message in messages
                    ),
                    return_exceptions=True,
                )
        except TimeoutError as exc:
            raise BusUnavailable(f"no confirms from {exchange!r} in {self._timeout} s") from exc
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            count = f"{len(failures)} of {len(messages)}"
            raise BusUnavailable(f"{count} messages to {exchange!r} not confirmed") from failures[0]

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> RabbitSubscription:
        """Consume a declared queue, competing with its other consumers."""
        self._require_connection()
        spec = _QUEUE_SPECS.get(queue)
        if spec is None:
            raise BusError(f"unknown queue {queue!r}")
        check_prefetch(prefetch)

        async def declare(channel: AbstractRobustChannel) -> AbstractRobustQueue:
            return await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)

        return await self._start_consumer(declare, handler, prefetch)

    async def queue_depths(self) -> dict[str, int]:
        """Ready messages in each declared queue, by passive declarations on a channel of
        their own (a refused declaration closes its channel, never the publishing one)."""
        connection = self._require_connection()
        with transient("count queued messages"):
            async with asyncio.timeout(self._timeout):
                channel = await connection.channel(publisher_confirms=False)
                try:
                    depths = {}
                    for spec in QUEUES:
                        queue = await channel.declare_queue(spec.name, passive=True)
                        depths[spec.name] = queue.declaration_result.message_count or 0
                    return depths
                finally:
                    with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                        await channel.close()

    async def subscribe(
        self,
        exchange: str,
        binding_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 100,
    ) -> RabbitSubscription:
        """Consume an exclusive auto-delete queue bound to `exchange` by `binding_keys`."""
        target = self._exchange(exchange)
        check_prefetch(prefetch)

        async def declare(channel: AbstractRobustChannel) -> AbstractRobustQueue:
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            for key in binding_keys:
                await queue.bind(target, key)
            return queue

        return await self._start_consumer(declare, handler, prefetch)

    async def _declare(self, channel: AbstractRobustChannel) -> None:
        for exchange in EXCHANGES:
            kind = aio_pika.ExchangeType(exchange.kind)
            self._exchanges[exchange.name] = await channel.declare_exchange(
                exchange.name, kind, durable=True
            )
        for spec in QUEUES:
            queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
            for binding in spec.bindings:
                await queue.bind(self._exchanges[binding.exchange], binding.key)
            self._queues[spec.name] = queue

    async def _start_consumer(
        self, declare: _DeclareQueue, handler: Handler, prefetch: int
    ) -> RabbitSubscription:
        connection = self._require_connection()
        with transient("start a consumer"):
            channel = await connection.channel()
            try:
                await channel.set_qos(prefetch_count=prefetch)
                subscription = RabbitSubscription(channel, await declare(channel), handler)
                await subscription.start()
            except BaseException:
                with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                    await channel.close()
                raise
        self._subscriptions = {s for s in self._subscriptions if not s.stopped}
        self._subscriptions.add(subscription)
        return subscription

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None or not self.connected:
            raise BusUnavailable("not connected to the broker")
        return self._connection

    def _exchange(self, name: str) -> AbstractRobustExchange:
        self._require_connection()
        exchange = self._exchanges.get(name)
        if exchange is None:
            raise BusError(f"unknown exchange {name!r}")
        return exchange
