"""The gateway on PostgreSQL and RabbitMQ: commands and events leave through the outbox."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bus import Delivery, RabbitBus
from bus.base import BusUnavailable, OutgoingMessage
from bus.memory import MemoryBus
from contracts.commands import CreateImage, command_decoder
from contracts.events import event_decoder
from contracts.names import CREATE_QUEUE, EVENTS_EXCHANGE
from gateway.app import create_app
from runtime.clock import now_us
from store import open_database, outbox_table
from support.auth import bearer
from support.auth import gateway_settings as auth_settings

CREATE = {"folderId": "f1", "name": "disk", "uri": "https://images.example/disk.qcow2"}


@pytest.fixture
async def rabbit_client(
    postgres_url: str, rabbit_url: str
) -> AsyncIterator[tuple[TestClient[Any, Any], RabbitBus]]:
    db = await open_database(postgres_url)
    bus = RabbitBus(rabbit_url)
    await bus.start()
    app = await create_app(auth_settings(), db, bus)
    async with TestClient(TestServer(app), headers=bearer()) as client:
        yield client, bus
    await bus.close()
    await db.close()


async def test_create_publishes_command_and_event(
    rabbit_client: tuple[TestClient[Any, Any], RabbitBus],
) -> None:
    client, bus = rabbit_client
    commands: asyncio.Queue[Delivery] = asyncio.Queue()
    events: asyncio.Queue[Delivery] = asyncio.Queue()
    await bus.consume(CREATE_QUEUE, commands.put, prefetch=10)
    await bus.subscribe(EVENTS_EXCHANGE, ["compute.image.#"], events.put)

    response = await client.post("/compute/v1/images", json=CREATE, headers={"X-Request-Id": "r-1"})
    operation = await response.json()
    assert response.status == 200

    delivery = await asyncio.wait_for(commands.get(), 5)
    command = command_decoder.decode(delivery.body)
    assert isinstance(command, CreateImage)
    assert command.operation_id == operation["id"] == delivery.message_id
    assert command.image_id == operation["metadata"]["imageId"]
    assert delivery.correlation_id == "r-1"

    event = event_decoder.decode((await asyncio.wait_for(events.get(), 5)).body)
    assert (event.type, event.subject, event.sequence) == (
        "compute.image.created",
        command.image_id,
        "1",
    )


class BrokerDown(MemoryBus):
    """A bus whose broker refuses every publish, as during an outage."""

    async def publish(self, exchange: str, messages: Sequence[OutgoingMessage]) -> None:
        raise BusUnavailable("broker unreachable")


async def test_broker_outage_queues_in_the_outbox(database_url: str) -> None:
    db = await open_database(database_url)
    bus = BrokerDown()
    await bus.start()
    app = await create_app(auth_settings(), db, bus)
    async with TestClient(TestServer(app), headers=bearer()) as client:
        response = await client.post("/compute/v1/images", json=CREATE)
        assert response.status == 200
        assert (await response.json())["done"] is False
    async with db.transaction() as conn:
        pending = await outbox_table.unsent(conn, now_us() + 1, 10)
    assert [m.routing_key for m in pending] == ["compute.image.created.f1", CREATE_QUEUE]
    await bus.close()
    await db.close()
