"""The event stream under test: a gateway on each store backend (in-process bus, no worker)
reached over real TCP, a proxy that can cut its connections, SSE reading helpers, and the live
`kiln dev` of the client tests (gateway and worker in one process) for end-to-end runs."""

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from client.conftest import (  # noqa: F401  (fixtures)
    admin_token,
    image_server,
    image_url,
    kiln_dev,
    kiln_dev_dir,
)

from api.settings import GatewaySettings
from bus.memory import MemoryBus
from gateway.app import create_app
from kiln.client_events import Frame, SseParser
from store import open_database
from store.db import Database
from support.auth import bearer
from support.auth import gateway_settings as auth_settings

URI = "https://images.example.com/disk.qcow2"


@dataclass
class Gateway:
    url: str
    db: Database
    bus: MemoryBus
    session: aiohttp.ClientSession

    async def create(self, folder: str, name: str = "") -> dict[str, Any]:
        """Create an image (it stays CREATING: no worker): one `created` event."""
        body = {"folderId": folder, "uri": URI, "name": name}
        async with self.session.post(f"{self.url}/compute/v1/images", json=body) as reply:
            assert reply.status == 200, await reply.text()
            return dict(await reply.json())

    async def update(self, image_id: str, description: str) -> None:
        """`updated` and `compute.operation.done`."""
        body = {"updateMask": "description", "description": description}
        path = f"{self.url}/compute/v1/images/{image_id}"
        async with self.session.patch(path, json=body) as reply:
            assert reply.status == 200, await reply.text()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await open_database(database_url)
    yield database
    await database.close()


@pytest.fixture
def settings() -> GatewaySettings:
    """The gateway's settings (a test module may override this fixture)."""
    return auth_settings()


@pytest.fixture
async def gateway(db: Database, settings: GatewaySettings) -> AsyncIterator[Gateway]:
    bus = MemoryBus()
    await bus.start()
    app = await create_app(settings, db, bus)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(headers=bearer()) as session:
            yield Gateway(str(server.make_url("")).rstrip("/"), db, bus, session)
    finally:
        await server.close()
        await bus.close()


@pytest.fixture
def folder() -> str:
    return f"f-{uuid.uuid4().hex[:12]}"


@dataclass
class Sse:
    """One open SSE response, read frame by frame."""

    response: aiohttp.ClientResponse
    parser: SseParser = field(default_factory=SseParser)
    pending: list[Frame] = field(default_factory=list)
    comments: int = 0

    async def next(self, timeout: float = 5.0) -> Frame:
        while not self.pending:
            chunk = await asyncio.wait_for(self.response.content.readany(), timeout)
            assert chunk, "the stream ended"
            self.comments += chunk.count(b"\n:")
            self.pending.extend(self.parser.feed(chunk))
        return self.pending.pop(0)

    async def event(self, timeout: float = 5.0) -> Frame:
        """The next frame carrying an event (position-only frames are skipped)."""
        while (frame := await self.next(timeout)).data is None:
            pass
        return frame

    async def ended(self, timeout: float = 5.0) -> bool:
        chunk = await asyncio.wait_for(self.response.content.read(), timeout)
        self.pending.extend(self.parser.feed(chunk))
        return self.response.content.at_eof()


@contextlib.asynccontextmanager
async def sse(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None, **query: str
) -> AsyncIterator[Sse]:
    async with session.get(f"{url}/kiln/v1/events", params=query, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/event-stream"
        yield Sse(response)


def cloud_event(frame: Frame) -> dict[str, Any]:
    assert frame.data is not None
    return dict(json.loads(frame.data))


class CuttingProxy:
    """A TCP proxy to `port` whose open connections `cut()` drops at once."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.transport.abort()


@pytest.fixture
async def proxy(gateway: Gateway) -> AsyncIterator[CuttingProxy]:
    port = int(gateway.url.rsplit(":", 1)[1])
    cutting = CuttingProxy(port)
    await cutting.start()
    yield cutting
    await cutting.close()
