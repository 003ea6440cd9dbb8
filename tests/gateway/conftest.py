"""A gateway on each store backend with the in-process bus, and a client for it."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bus.memory import MemoryBus
from gateway.app import create_app
from gateway.settings import GatewaySettings
from store import open_database


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus()
    await bus.start()
    yield bus
    await bus.close()


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(max_body_bytes=64 * 1024)


@pytest.fixture
async def client(
    database_url: str, bus: MemoryBus, gateway_settings: GatewaySettings
) -> AsyncIterator[TestClient[Any, Any]]:
    db = await open_database(database_url)
    app = await create_app(gateway_settings, db, bus)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    await db.close()
