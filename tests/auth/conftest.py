"""A gateway (in-process bus, each store backend) whose callers are told apart by their tokens:
`api` is an admin (KILN_ADMINS), `caller("bob")` anyone else. Every reply is recorded for the
contract test, as the gateway tests' are."""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.settings import GatewaySettings
from bus.memory import MemoryBus
from gateway.app import create_app
from store.db import Database
from support.auth import ADMIN, bearer
from support.auth import gateway_settings as auth_settings
from tests.gateway import conftest as gateway
from tests.gateway.conftest import Api, Reply

# The gateway tests' fixtures: the database (a PostgreSQL schema per test), bus, finish_ready.
gateway_pg_database = gateway.gateway_pg_database
postgres_url = gateway.postgres_url
db = gateway.db
bus = gateway.bus
finish_ready = gateway.finish_ready


@dataclass
class Caller(Api):
    """The API as one subject: every call carries that subject's token (or `auth` as given)."""

    auth: dict[str, str] = field(default_factory=dict)

    async def call(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Reply:
        return await super().call(method, path, headers={**self.auth, **(headers or {})}, **kwargs)


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return auth_settings(max_body_bytes=64 * 1024)


@pytest.fixture
async def client(
    db: Database, bus: MemoryBus, gateway_settings: GatewaySettings
) -> AsyncIterator[TestClient[Any, Any]]:
    app = await create_app(gateway_settings, db, bus)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
def caller(
    client: TestClient[Any, Any], db: Database, request: pytest.FixtureRequest
) -> Callable[..., Caller]:
    """`caller("bob")`: bob's API; `caller(auth={...})` sends exactly those headers."""

    def make(subject: str | None = None, *, auth: dict[str, str] | None = None) -> Caller:
        given = auth if auth is not None else bearer(subject) if subject else {}
        return Caller(client, db, request.node.nodeid, auth=given)

    return make


@pytest.fixture
def api(caller: Callable[..., Caller]) -> Caller:
    """An admin of every folder (KILN_ADMINS)."""
    return caller(ADMIN)
