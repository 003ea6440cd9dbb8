"""A test's own AMQP subscriber: an exclusive queue bound to one of Kiln's exchanges, connected
straight to the broker, recording every delivery (duplicates included)."""

import uuid
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage

from support.kiln_processes import wait_until

BARRIER = "kiln-test-barrier-"


class Tapped:
    def __init__(self, message: AbstractIncomingMessage) -> None:
        self.routing_key = message.routing_key or ""
        self.message_id = message.message_id or ""
        self.content_type = message.content_type
        self.headers: dict[str, Any] = dict(message.headers)
        self.body = message.body

    def json(self) -> Any:
        return orjson.loads(self.body)


class AmqpTap:
    """Bind before the traffic starts; `received` grows as messages arrive."""

    def __init__(self, url: str, exchange: str, binding_keys: tuple[str, ...] = ("#",)) -> None:
        self.url = url
        self.exchange = exchange
        self.binding_keys = binding_keys
        self.received: list[Tapped] = []
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        exchange = self._exchange = await channel.get_exchange(self.exchange, ensure=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in self.binding_keys:
            await queue.bind(exchange, key)
        await queue.consume(self._on_message, no_ack=True)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.received.append(Tapped(message))

    def messages(self) -> list[Tapped]:
        """What arrived, barriers left out."""
        return [tapped for tapped in self.received if not tapped.message_id.startswith(BARRIER)]

    async def barrier(self, timeout: float = 10.0) -> None:
        """Return once every message routed to our queue before this call has arrived: a
        marker published now is queued behind them."""
        assert self._exchange is not None, "start the tap first"
        marker = f"{BARRIER}{uuid.uuid4().hex}"
        await self._exchange.publish(
            aio_pika.Message(b"{}", message_id=marker), routing_key="kiln-test.barrier"
        )

        def arrived() -> bool:
            return any(tapped.message_id == marker for tapped in self.received)

        await wait_until(arrived, timeout, "the tap's barrier message")


class EventTap(AmqpTap):
    """CloudEvents from `kiln.events`."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "kiln.events", ("#",))

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        found = [tapped.json() for tapped in self.messages()]
        return [e for e in found if type_ is None or e["type"] == type_]

    def ids_by_image(self, type_: str) -> dict[str, set[str]]:
        """Distinct event ids of one type, per image (at-least-once: an id may repeat)."""
        ids: dict[str, set[str]] = {}
        for event in self.events(type_):
            ids.setdefault(event["subject"], set()).add(event["id"])
        return ids

    def ready_ids(self) -> dict[str, set[str]]:
        return self.ids_by_image("compute.image.ready")
