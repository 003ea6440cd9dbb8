"""RabbitMQ plumbing: error mapping, message conversion, consumers with manual acks."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    ProbableAuthenticationError,
)

from bus.base import BusError, BusUnavailable, Delivery, Handler, OutgoingMessage
from bus.runner import InFlight, Outcome, run_handler

log = structlog.get_logger(__name__)


# The broker refusing a login or a declaration will refuse it again: retrying cannot help.
_REFUSALS = (
    ProbableAuthenticationError,
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)
# How long shutdown waits for one broker call (cancel, close) before giving up on it.
BROKER_CALL_SECONDS = 5.0


@contextlib.contextmanager
def transient(action: str) -> Iterator[None]:
    """Map refusals to BusError, other connection, channel and timeout errors to BusUnavailable."""
    try:
        yield
    except _REFUSALS as exc:
        raise BusError(f"{action}: the broker refused: {exc!r}") from exc
    except (TimeoutError, *CONNECTION_EXCEPTIONS) as exc:
        raise BusUnavailable(f"{action}: {exc!r}") from exc


def to_amqp(message: OutgoingMessage) -> aio_pika.Message:
    """A persistent AMQP message with every property of `message`."""
    return aio_pika.Message(
        body=message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        type=message.type,
        headers=dict(message.headers),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def to_delivery(message: AbstractIncomingMessage) -> Delivery:
    """The Delivery for an AMQP message; non-string headers are left out."""
    return Delivery(
        routing_key=message.routing_key or "",
        body=message.body,
        message_id=message.message_id or "",
        correlation_id=message.correlation_id,
        content_type=message.content_type or "",
        type=message.type,
        headers={k: v for k, v in message.headers.items() if isinstance(v, str)},
        redelivered=bool(message.redelivered),
        delivery_count=_delivery_count(message),
    )


def _delivery_count(message: AbstractIncomingMessage) -> int:
    # Quorum queues count returns in x-delivery-count; classic queues only flag a redelivery.
    returns = message.headers.get("x-delivery-count")
    if isinstance(returns, int):
        return returns + 1
    return 2 if message.redelivered else 1


DeclareQueue = Callable[[AbstractChannel], Awaitable[AbstractQueue]]


class RabbitSubscription:
    """One consumer on its own channel, so that its prefetch bounds its handlers, but for
    handlers that outlived a closed channel (see `_on_message`). `attach` opens the channel
    again after a reconnect, or after the broker closed it (a consumer timeout).

    Slots that kept the handlers at `prefetch` across a close were tried: a delivery waiting
    for one stays unacknowledged, times out in turn, and the queue's delivery limit then
    dead-letters it (tests/faults/test_faults_consumer_timeout.py showed it: a create sent
    behind three imports that held every slot ended in ERROR after six deliveries)."""

    def __init__(
        self,
        declare: DeclareQueue,
        handler: Handler,
        *,
        prefetch: int,
        label: str,
        on_closed: Callable[[], None],
    ) -> None:
        self._declare = declare
        self._handler = handler
        self._prefetch = prefetch
        self._on_closed = on_closed
        self._label = label
        self._in_flight = InFlight(label)
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._stopping = False

    @property
    def stopped(self) -> bool:
        """True once stop was called."""
        return self._stopping

    @property
    def detached(self) -> bool:
        """True while it should consume and has no open channel to consume on."""
        return not self._stopping and (self._channel is None or self._channel.is_closed)

    async def attach(self, connection: AbstractConnection) -> None:
        """Consume with manual acks on a channel of its own; nothing while that one is open."""
        if not self.detached:
            return
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await self._declare(channel)
            consumer_tag = await queue.consume(self._on_message, no_ack=False)
        except BaseException:
            await close_quietly(channel)
            raise
        if self._stopping:  # stopped while it attached: the new consumer must not take work
            await close_quietly(channel)
            return
        # A consumer the broker cancels (its queue deleted) comes back on a channel of its own.
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(lambda _: self._cancelled_by_broker(channel))
        channel.close_callbacks.add(lambda *_: self._on_closed())
        self._channel, self._queue, self._consumer_tag = channel, queue, consumer_tag

    async def stop(self, timeout: float = 30.0) -> None:
        """Cancel the consumer, drain in-flight handlers, close the channel.

        The broker requeues the messages of handlers still running after `timeout`.
        """
        if self._stopping:
            return
        self._stopping = True
        # Bounded, so that shutdown ends while the broker is unreachable.
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(TimeoutError, *CONNECTION_EXCEPTIONS):
                async with asyncio.timeout(BROKER_CALL_SECONDS):
                    await self._queue.cancel(self._consumer_tag)
        await self._in_flight.drain(timeout)
        if self._channel is not None:
            await close_quietly(self._channel)

    async def _cancelled_by_broker(self, channel: AbstractChannel) -> None:
        log.warning("bus.consumer_cancelled", queue=self._label)
        await close_quietly(channel)  # its close asks for a repair

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            # Arrived between our cancel and the broker's cancel-ok.
            await self._settle(message, Outcome.REQUEUE)
            return
        # aiormq cancels the tasks it runs deliveries in when their channel closes: on a lost
        # connection, and when the broker's consumer_timeout runs out under a long import. The
        # handler runs in a task of its own, so its work outlives the channel; its
        # acknowledgement is lost with the channel, and the broker's second delivery finds the
        # operation still leased, or done.
        self._in_flight.add(asyncio.create_task(self._handle(message)))

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        outcome = await run_handler(self._handler, to_delivery(message), self._label)
        await self._settle(message, outcome)

    async def _settle(self, message: AbstractIncomingMessage, outcome: Outcome) -> None:
        try:
            if outcome is Outcome.ACK:
                await message.ack()
            elif outcome is Outcome.REQUEUE:
                await message.nack(requeue=True)
            else:
                await message.reject(requeue=False)
        except CONNECTION_EXCEPTIONS:
            # The channel is gone, so the broker redelivers the message anyway.
            log.warning("bus.settle_failed", queue=self._label, outcome=outcome.value)


async def close_quietly(channel: AbstractChannel) -> None:
    """Close `channel`, waiting a bounded time, whatever state its connection is in."""
    with contextlib.suppress(TimeoutError, *CONNECTION_EXCEPTIONS):
        async with asyncio.timeout(BROKER_CALL_SECONDS):
            await channel.close()
