"""Two gateways on one PostgreSQL and one RabbitMQ: an event committed through one reaches the
other's streams through the bus wake-up, well before the poll would have found it."""

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bus import RabbitBus
from gateway.app import create_app
from gateway.events import sse_stream
from store import open_database
from support.auth import bearer
from support.auth import gateway_settings as auth_settings

from .conftest import URI, cloud_event, sse


@contextlib.asynccontextmanager
async def gateway(database_url: str, broker_url: str) -> AsyncIterator[str]:
    db = await open_database(database_url)
    bus = RabbitBus(broker_url)
    await bus.start()
    server = TestServer(await create_app(auth_settings(), db, bus))
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await bus.close()
        await db.close()


async def test_an_event_from_another_gateway_wakes_the_stream(
    postgres_url: str, rabbit_url: str, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse_stream, "POLL_SECONDS", 30.0)  # only a wake-up can be in time
    async with (
        gateway(postgres_url, rabbit_url) as streaming,
        gateway(postgres_url, rabbit_url) as writing,
        aiohttp.ClientSession(headers=bearer()) as session,
        sse(session, streaming, folderId=folder) as stream,
    ):
        assert (await stream.next()).position == 0
        body = {"folderId": folder, "uri": URI}
        async with session.post(f"{writing}/compute/v1/images", json=body) as reply:
            assert reply.status == 200
            image_id = (await reply.json())["metadata"]["imageId"]
        frame = await stream.event(timeout=5)
    assert (frame.position, frame.type) == (1, "compute.image.created")
    assert cloud_event(frame)["subject"] == image_id
