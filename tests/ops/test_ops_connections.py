"""The gateway's connections: one that stalls in its request head, or idles between requests,
is closed after KILN_HTTP_HEADER_TIMEOUT_SECONDS; a request being served is not."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from ops.opskit import settings

from kiln import processes
from kiln.client_events import SseParser
from kiln.settings import Settings

TIMEOUT = 0.5
MARGIN = 1.0


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Settings]:
    config = settings(tmp_path, http_header_timeout_seconds=str(TIMEOUT))
    async with processes.gateway_process(config):
        yield config


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


async def closed_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection (reading whatever it sends first)."""
    started = time.monotonic()
    async with asyncio.timeout(TIMEOUT + MARGIN):
        while await reader.read(65536):
            pass
    return time.monotonic() - started


async def test_a_stalled_request_head_is_closed(gateway: Settings) -> None:
    async with connection(gateway.http_port) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: no end of head
        assert await closed_after(reader) >= TIMEOUT - 0.1


async def test_an_idle_keep_alive_connection_is_closed(gateway: Settings) -> None:
    async with connection(gateway.http_port) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        assert await closed_after(reader) >= TIMEOUT - 0.1


async def test_an_event_stream_outlives_the_timeout(
    gateway: Settings, http: aiohttp.ClientSession
) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}"
    url = f"{base}/kiln/v1/events"
    async with http.get(url, params={"folderId": "f-conn", "lastEventId": "0"}) as stream:
        assert stream.status == 200
        await asyncio.sleep(3 * TIMEOUT)  # idle, yet being served: not a stalled head
        body = {"folderId": "f-conn", "uri": "https://images.example.com/disk.qcow2"}
        async with http.post(f"{base}/compute/v1/images", json=body) as created:
            assert created.status == 200
        parser, frames = SseParser(), []
        async with asyncio.timeout(5):
            while not any(frame.data for frame in frames):
                frames.extend(parser.feed(await stream.content.readany()))
    assert [frame.type for frame in frames if frame.data] == ["compute.image.created"]
