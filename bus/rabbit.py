"""RabbitBus: the bus on RabbitMQ, over Kiln's own reconnect loop (bus/rabbit_link.py)."""

import asyncio
import itertools
from collections.abc import Sequence

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError

from bus.base import BusError, BusUnavailable, Handler, OutgoingMessage
from bus.rabbit_consumer import (
    DeclareQueue,
    RabbitSubscription,
    close_quietly,
    to_amqp,
    transient,
)
from bus.rabbit_link import RabbitLink
from bus.rabbit_topology import declare_topology
from bus.runner import check_prefetch
from bus.topology import EXCHANGES, QUEUES
from runtime.broker_urls import broker_nodes

log = structlog.get_logger(__name__)

_QUEUE_SPECS = {spec.name: spec for spec in QUEUES}
# Pauses between the rounds of a publish whose messages the broker nacked (a quorum queue
# without a leader nacks until one is elected): at once first, then growing.
_RETRY_PAUSES = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
_RETRIED = (DeliveryError, *CONNECTION_EXCEPTIONS)  # a nack, or a confirm lost with its channel


class RabbitBus:
    """Confirmed publishing on one channel, each consumer on a channel of its own; the link
    connects to the first node of the URL's that answers and restores them after a loss."""

    def __init__(self, url: str, *, timeout: float = 10.0, quorum_size: int = 3) -> None:
        """`timeout` bounds connecting and waiting for the confirms of one publish;
        `quorum_size` is the initial group size of the quorum queues Kiln declares."""
        self._timeout = timeout
        self._quorum_size = quorum_size
        self._link = RabbitLink(broker_nodes(url), self._restore, timeout=timeout)
        self._started = False
        self._closing = False
        # One restore at a time: the link's loop and a publish reopening a nacked channel.
        self._restoring = asyncio.Lock()
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._subscriptions: set[RabbitSubscription] = set()
        self._retiring: set[asyncio.Task[None]] = set()  # replaced channels, closed later

    @property
    def connected(self) -> bool:
        """True while the connection and the publishing channel are open."""
        channel = self._channel
        return self._link.up and channel is not None and not channel.is_closed

    async def start(self) -> None:
        """Connect, open the publishing channel and declare the topology."""
        if self._started:
            return
        try:
            await self._link.open()
        except BusError:
            await self.close()
            raise
        self._started = True

    async def close(self) -> None:
        """Stop the subscriptions, then close the publishing channel and the connection."""
        self._started = False
        self._closing = True  # what closes from now on is not reopened
        for subscription in list(self._subscriptions):
            await subscription.stop()
        self._subscriptions.clear()
        for retiring in list(self._retiring):
            retiring.cancel()  # the connection's close closes their channels
        channel, self._channel = self._channel, None
        self._exchanges.clear()
        if channel is not None:
            await close_quietly(channel)
        await self._link.close()
        self._closing = False

    async def publish(self, exchange: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message, then wait for all the confirms together. What the broker did
        not confirm is sent again at once on a fresh channel, until the timeout."""
        pending = list(messages)
        try:
            async with asyncio.timeout(self._timeout):
                for pause in itertools.chain(_RETRY_PAUSES, itertools.repeat(_RETRY_PAUSES[-1])):
                    if self._link.up and not self.connected:  # the broker closed the channel
                        await self._replace(self._channel)
                    channel, target = self._publishing_exchange(exchange)
                    pending = await _unconfirmed(target, pending)
                    if not pending:
                        return
                    log.info("bus.publish_unconfirmed", exchange=exchange, messages=len(pending))
                    await self._replace(channel)
                    await asyncio.sleep(pause)
        except TimeoutError:
            pass
        count = f"{len(pending)} of {len(messages)}"
        raise BusUnavailable(f"{count} messages to {exchange!r} not confirmed in {self._timeout} s")

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> RabbitSubscription:
        """Consume a declared queue, competing with its other consumers."""
        spec = _QUEUE_SPECS.get(queue)
        if spec is None:
            raise BusError(f"unknown queue {queue!r}")

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await channel.get_queue(spec.name)  # declared by the restore, passively here

        return await self._start_consumer(declare, handler, prefetch, spec.name)

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
                    await close_quietly(channel)

    async def subscribe(
        self,
        exchange: str,
        binding_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 100,
    ) -> RabbitSubscription:
        """Consume an exclusive auto-delete queue bound to `exchange` by `binding_keys`."""
        self._publishing_exchange(exchange)  # refuses an unknown exchange

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            for key in binding_keys:
                await queue.bind(exchange, key)
            return queue

        return await self._start_consumer(declare, handler, prefetch, exchange)

    async def _restore(self, connection: AbstractConnection) -> None:
        """Open what is closed on `connection`: the publishing channel and every subscription's
        channel, after declaring the topology again (a node may have come back empty, a queue
        may have been deleted). Each subscription is attached whatever the others do."""
        async with self._restoring:
            detached = [s for s in self._subscriptions if s.detached]
            channel = self._channel
            if channel is None or channel.is_closed or detached:
                await declare_topology(connection, self._quorum_size)
            if channel is None or channel.is_closed:
                await self._open_publishing(connection)
            failures = [
                result
                for result in await asyncio.gather(
                    *(subscription.attach(connection) for subscription in detached),
                    return_exceptions=True,
                )
                if isinstance(result, BaseException)
            ]
            if failures:
                raise failures[0]

    async def _open_publishing(self, connection: AbstractConnection) -> None:
        channel = await connection.channel(publisher_confirms=True)
        self._exchanges = {
            spec.name: await channel.get_exchange(spec.name, ensure=False) for spec in EXCHANGES
        }
        channel.close_callbacks.add(lambda *_: self._on_channel_closed())
        self._channel = channel

    async def _replace(self, channel: AbstractChannel | None) -> None:
        """A fresh publishing channel in place of `channel`, if that is still the one: the
        publishes waiting on `channel` get their confirms there, and it is closed after."""
        connection = self._link.connection
        if connection is None or not self._link.up:
            raise BusUnavailable("not connected to the broker")
        with transient("reopen the publishing channel"):
            async with self._restoring:
                if channel is not None and channel is self._channel and not channel.is_closed:
                    log.warning("bus.publishing_channel_reopened")
                    await self._open_publishing(connection)
                    retiring = asyncio.create_task(self._retire(channel))
                    self._retiring.add(retiring)
                    retiring.add_done_callback(self._retiring.discard)
            await self._restore(connection)  # opens one if `channel` was closed under it

    async def _retire(self, channel: AbstractChannel) -> None:
        await asyncio.sleep(self._timeout)  # as long as its publishes wait for confirms
        await close_quietly(channel)

    async def _start_consumer(
        self, declare: DeclareQueue, handler: Handler, prefetch: int, label: str
    ) -> RabbitSubscription:
        check_prefetch(prefetch)
        connection = self._require_connection()
        subscription = RabbitSubscription(
            declare, handler, prefetch=prefetch, label=label, on_closed=self._on_channel_closed
        )
        with transient("start a consumer"):
            async with self._restoring:
                await subscription.attach(connection)
        self._subscriptions = {s for s in self._subscriptions if not s.stopped}
        self._subscriptions.add(subscription)
        return subscription

    def _on_channel_closed(self) -> None:
        if not self._closing:
            self._link.repair()

    def _require_connection(self) -> AbstractConnection:
        connection = self._link.connection
        if connection is None or not self.connected:
            raise BusUnavailable("not connected to the broker")
        return connection

    def _publishing_exchange(self, name: str) -> tuple[AbstractChannel, AbstractExchange]:
        self._require_connection()
        exchange = self._exchanges.get(name)
        if exchange is None:
            raise BusError(f"unknown exchange {name!r}")
        assert self._channel is not None
        return self._channel, exchange


async def _unconfirmed(
    target: AbstractExchange, messages: list[OutgoingMessage]
) -> list[OutgoingMessage]:
    """Publish `messages` pipelined; those the broker nacked, or whose confirm was lost with
    the channel. BusError for a message the client library refuses to send."""
    results = await asyncio.gather(
        *(target.publish(to_amqp(m), m.routing_key, mandatory=False) for m in messages),
        return_exceptions=True,
    )
    failed = []
    for message, result in zip(messages, results, strict=True):
        if isinstance(result, _RETRIED):
            failed.append(message)
        elif isinstance(result, BaseException):  # the client refused it: sending again cannot help
            raise BusError(f"cannot publish {message.message_id!r}: {result!r}") from result
    return failed
