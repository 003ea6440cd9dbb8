"""A gateway on each store backend with the in-process bus, and a client for it.

`api` wraps the client: every call it makes is recorded (with the RPC it addresses) so that
`test_contract_protobuf.py` can parse every response body the API tests produced.
`finish_ready` stands in for a worker: it turns a CREATING image into a READY one.
"""

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from api.settings import GatewaySettings
from bus.memory import MemoryBus
from contracts.enums import ImageStatus
from contracts.images import ImageAny
from contracts.names import CANCELS_EXCHANGE
from contracts.notices import notice_decoder
from gateway.app import create_app
from runtime.clock import now_us
from store import images, open_database, operations
from store.db import Database
from store.images import to_image
from support.auth import bearer
from support.auth import gateway_settings as auth_settings

FOLDER = "folder-a"
OTHER_FOLDER = "folder-b"
# Well-formed ids (contracts/ids.py) that name nothing.
MISSING_IMAGE = "img" + "0" * 17
MISSING_OPERATION = "opr" + "0" * 17
URI = "https://images.example.com/disk.qcow2"
GIB = 1024**3
MIB4 = 4 * 1024**2

# (verb, path pattern, rpc) — the method table of spec §2; Cancel is served on GET and POST.
_RPC_ROUTES = [
    ("GET", r"/compute/v1/images/[^/:]+", "ImageService.Get"),
    ("GET", r"/compute/v1/images:latestByFamily", "ImageService.GetLatestByFamily"),
    ("GET", r"/compute/v1/images", "ImageService.List"),
    ("POST", r"/compute/v1/images", "ImageService.Create"),
    ("PATCH", r"/compute/v1/images/[^/:]+", "ImageService.Update"),
    ("DELETE", r"/compute/v1/images/[^/:]+", "ImageService.Delete"),
    ("GET", r"/compute/v1/images/[^/:]+/operations", "ImageService.ListOperations"),
    ("GET", r"/compute/v1/images/[^/:]+:listAccessBindings", "ImageService.ListAccessBindings"),
    ("POST", r"/compute/v1/images/[^/:]+:setAccessBindings", "ImageService.SetAccessBindings"),
    (
        "POST",
        r"/compute/v1/images/[^/:]+:updateAccessBindings",
        "ImageService.UpdateAccessBindings",
    ),
    ("GET", r"/operations/[^/:]+", "OperationService.Get"),
    ("GET", r"/operations/[^/:]+:cancel", "OperationService.Cancel"),
    ("POST", r"/operations/[^/:]+:cancel", "OperationService.Cancel"),
]


def rpc_of(method: str, path: str) -> str | None:
    """The contract RPC a request addresses, or None (unknown path, wrong verb)."""
    for verb, pattern, rpc in _RPC_ROUTES:
        if verb == method and re.fullmatch(pattern, path):
            return rpc
    return None


@dataclass(frozen=True)
class Recorded:
    """One response of the API under test, kept for the contract test."""

    rpc: str | None
    method: str
    path: str
    status: int
    body: bytes
    test: str


RECORDED: list[Recorded] = []


@dataclass
class Reply:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> int:
        """The gRPC code of an error body."""
        return int(self.json["code"])

    @property
    def message(self) -> str:
        return str(self.json["message"])


@dataclass
class Api:
    """The Image REST API through the test client; every reply is recorded."""

    client: TestClient[Any, Any]
    db: Database
    test: str
    seen: list[Recorded] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        if json_body is not None:
            kwargs["data"] = json.dumps(json_body)
            kwargs["headers"] = {"Content-Type": "application/json", **(headers or {})}
        elif data is not None:
            kwargs["data"] = data
        async with self.client.request(method, path, **kwargs) as response:
            reply = Reply(response.status, await response.read(), response.headers)
        record = Recorded(rpc_of(method, path), method, path, reply.status, reply.body, self.test)
        RECORDED.append(record)
        self.seen.append(record)
        return reply

    # ---- ImageService -------------------------------------------------------------------

    async def create(self, headers: dict[str, str] | None = None, **fields: Any) -> Reply:
        """Create with a uri source in FOLDER unless the fields say otherwise."""
        body = {"folderId": FOLDER, "uri": URI, **fields}
        return await self.call("POST", "/compute/v1/images", json_body=body, headers=headers)

    async def create_raw(self, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return await self.call("POST", "/compute/v1/images", json_body=body, headers=headers)

    async def new_image(self, **fields: Any) -> str:
        """Create an image (it stays CREATING: no worker runs) and return its id."""
        reply = await self.create(**fields)
        assert reply.status == 200, reply.body
        return str(reply.json["metadata"]["imageId"])

    async def get(self, image_id: str) -> Reply:
        return await self.call("GET", f"/compute/v1/images/{image_id}")

    async def image(self, image_id: str) -> dict[str, Any]:
        reply = await self.get(image_id)
        assert reply.status == 200, reply.body
        return dict(reply.json)

    async def latest(self, folder_id: str, family: str) -> Reply:
        params = {"folderId": folder_id, "family": family}
        return await self.call("GET", "/compute/v1/images:latestByFamily", params=params)

    async def list(self, **params: Any) -> Reply:
        query = {"folderId": FOLDER, **{k: str(v) for k, v in params.items()}}
        return await self.call("GET", "/compute/v1/images", params=query)

    async def update(self, image_id: str, body: Any) -> Reply:
        return await self.call("PATCH", f"/compute/v1/images/{image_id}", json_body=body)

    async def delete(self, image_id: str, headers: dict[str, str] | None = None) -> Reply:
        return await self.call("DELETE", f"/compute/v1/images/{image_id}", headers=headers)

    async def operations(self, image_id: str, **params: Any) -> Reply:
        query = {k: str(v) for k, v in params.items()}
        return await self.call("GET", f"/compute/v1/images/{image_id}/operations", params=query)

    async def list_bindings(self, image_id: str, **params: Any) -> Reply:
        query = {k: str(v) for k, v in params.items()}
        path = f"/compute/v1/images/{image_id}:listAccessBindings"
        return await self.call("GET", path, params=query)

    async def set_bindings(self, image_id: str, body: Any) -> Reply:
        path = f"/compute/v1/images/{image_id}:setAccessBindings"
        return await self.call("POST", path, json_body=body)

    async def update_bindings(self, image_id: str, body: Any) -> Reply:
        path = f"/compute/v1/images/{image_id}:updateAccessBindings"
        return await self.call("POST", path, json_body=body)

    # ---- OperationService ---------------------------------------------------------------

    async def operation(self, operation_id: str) -> Reply:
        return await self.call("GET", f"/operations/{operation_id}")

    async def cancel(self, operation_id: str, method: str = "GET") -> Reply:
        return await self.call(method, f"/operations/{operation_id}:cancel")


PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


async def _pg_admin(statement: str) -> None:
    admin = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def gateway_pg_database() -> Iterator[str]:
    """One PostgreSQL database for this package's session (dropped afterwards)."""
    name = f"kiln_gateway_{uuid.uuid4().hex}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    yield f"{PG_SERVER}/{name}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def postgres_url(gateway_pg_database: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL schema for one test, dropped afterwards.

    Overrides the per-test database of tests/conftest.py for this package: CREATE DATABASE
    costs ~0.3 s (more under load), a schema ~2 ms, and these tests need the suite fast. The
    URL's `search_path` puts every table the store creates into the test's own schema."""
    schema = f"t_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(gateway_pg_database)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield f"{gateway_pg_database}?search_path={schema}"
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await admin.close()


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus()
    await bus.start()
    yield bus
    await bus.close()


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return auth_settings(max_body_bytes=64 * 1024)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The database the gateway under test uses (one per store backend)."""
    database = await open_database(database_url)
    yield database
    await database.close()


@pytest.fixture
async def client(
    db: Database, bus: MemoryBus, gateway_settings: GatewaySettings
) -> AsyncIterator[TestClient[Any, Any]]:
    """Every request carries an admin's token unless the test sends its own."""
    app = await create_app(gateway_settings, db, bus)
    async with TestClient(TestServer(app), headers=bearer()) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient[Any, Any], db: Database, request: pytest.FixtureRequest) -> Api:
    return Api(client, db, request.node.nodeid)


FinishReady = Callable[..., Awaitable[None]]


async def make_ready(db: Database, image_id: str, *, size: int = GIB) -> None:
    """Test stand-in for a worker finishing an import: the image becomes READY with `size`,
    minDiskSize = max(requested, size) rounded up to 4 MiB (DESIGN), and its open create
    operation ends with the Image."""
    async with db.transaction() as conn:
        image = (await images.get_locked(conn, [image_id])).get(image_id)
        assert image is not None and image.status is ImageStatus.CREATING
        ready = msgspec.structs.replace(
            image,
            status=ImageStatus.READY,
            size=size,
            storage_size=size // 2,
            min_disk_size=-(-max(image.min_disk_size, size) // MIB4) * MIB4,
        )
        await images.replace_many(conn, [ready])
        response = ImageAny(**msgspec.structs.asdict(to_image(ready)))
        for op in await operations.page_for_resource(conn, image_id, None, 100):
            if op.kind == operations.CREATE and not op.done:
                await operations.finish(conn, [(op.id, response, None)], now_us())


@pytest.fixture
def finish_ready(db: Database) -> FinishReady:
    async def finish(image_id: str, *, size: int = GIB) -> None:
        await make_ready(db, image_id, size=size)

    return finish


async def cancel_notices(db: Database) -> list[str]:
    """The operations named by the cancel notices in the outbox, in order."""
    async with db.transaction() as conn:
        rows = await conn.fetch(
            "SELECT body FROM outbox WHERE exchange = ? ORDER BY seq", CANCELS_EXCHANGE
        )
    return [notice_decoder.decode(bytes(row["body"])).operation_id for row in rows]


async def take_lease(db: Database, operation_id: str, seconds: float = 1000.0) -> None:
    """What a worker claiming the operation does (a lease run out when `seconds` < 0)."""
    async with db.transaction() as conn:
        now = now_us()
        until = now + int(seconds * 1e6)
        assert await operations.take_leases(conn, [operation_id], "worker-1", now, until)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The contract test over every recorded response runs after all the API tests."""
    last = [item for item in items if "test_every_recorded_response" in item.name]
    items[:] = [item for item in items if item not in last] + last
