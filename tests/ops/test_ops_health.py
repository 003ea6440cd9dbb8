"""`/healthz` and `/readyz` on the gateway and on a worker's side port: readiness needs the store
and no shutdown in progress (a worker also its broker), and turns false as soon as shutdown
starts."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from ops.opskit import scrape, settings

from api.settings import GatewaySettings
from bus import MemoryBus
from gateway.app import create_app
from gateway.health import PUBLIC_PATHS
from gateway.keys import DB
from kiln import processes
from store import Database, open_database
from store.postgres import PostgresDatabase
from support.kiln_processes import free_port
from worker.blobs import FileBlobStore
from worker.http import create_side_app


@pytest.fixture
async def unreachable() -> AsyncIterator[Database]:
    """A PostgreSQL store whose server is gone: nothing listens on its port."""
    pool = await asyncpg.create_pool(
        f"postgresql://postgres@127.0.0.1:{free_port()}/kiln", min_size=0
    )
    yield PostgresDatabase(pool)
    await pool.close()


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    memory = MemoryBus()
    await memory.start()
    yield memory
    await memory.close()


async def get(client: TestClient[Any, Any], path: str) -> tuple[int, Any]:
    response = await client.get(path)
    return response.status, await response.json()


def test_public_paths_are_named() -> None:
    assert set(PUBLIC_PATHS) == {"/healthz", "/readyz", "/metrics"}


async def test_gateway_not_ready_without_its_store(
    tmp_path: Path, bus: MemoryBus, unreachable: Database
) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'kiln.db'}")
    try:
        app = await create_app(GatewaySettings(), db, bus)
        app[DB] = unreachable
        async with TestClient(TestServer(app)) as client:
            assert await get(client, "/healthz") == (200, {"status": "ok"})
            status, body = await get(client, "/readyz")
    finally:
        await db.close()
    assert status == 503
    assert body == {"ready": False, "store": False, "broker": True, "draining": False}


async def _readiness_once_the_broker_closes(
    app: web.Application, bus: MemoryBus
) -> tuple[int, Any]:
    """`/readyz` of `app` after its broker connection closes (ready before it does)."""
    async with TestClient(TestServer(app)) as client:
        assert (await get(client, "/readyz"))[0] == 200
        await bus.close()
        return await get(client, "/readyz")


async def test_gateway_stays_ready_without_its_broker(tmp_path: Path, bus: MemoryBus) -> None:
    """What it accepts meanwhile waits in its outbox (tests/faults/test_faults_broker_cut.py)."""
    db = await open_database(f"sqlite:///{tmp_path / 'kiln.db'}")
    try:
        app = await create_app(GatewaySettings(), db, bus)
        status, body = await _readiness_once_the_broker_closes(app, bus)
    finally:
        await db.close()
    assert status == 200 and body == {
        "ready": True,
        "store": True,
        "broker": False,
        "draining": False,
    }


async def test_worker_side_port_not_ready_without_its_store(
    tmp_path: Path, bus: MemoryBus, unreachable: Database
) -> None:
    app = create_side_app(unreachable, bus, FileBlobStore(tmp_path), asyncio.Event(), lambda: True)
    async with TestClient(TestServer(app)) as client:
        assert await get(client, "/healthz") == (200, {"status": "ok"})
        status, body = await get(client, "/readyz")
    assert status == 503
    assert body == {
        "ready": False,
        "store": False,
        "broker": True,
        "draining": False,
        "blobs": True,
    }


async def test_worker_side_port_not_ready_without_its_broker(
    tmp_path: Path, bus: MemoryBus
) -> None:
    """A worker without its broker takes no commands: unlike a gateway, it is not ready."""
    db = await open_database(f"sqlite:///{tmp_path / 'kiln.db'}")
    app = create_side_app(db, bus, FileBlobStore(tmp_path), asyncio.Event(), lambda: True)
    try:
        status, body = await _readiness_once_the_broker_closes(app, bus)
    finally:
        await db.close()
    assert status == 503 and body["broker"] is False and body["store"] is True


async def test_worker_side_port_serves_probes_and_metrics(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = settings(tmp_path)
    base = f"http://127.0.0.1:{config.worker_http_port}"
    async with processes.worker_process(config) as worker:
        assert worker.running
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 200
            assert await response.json() == {
                "ready": True,
                "store": True,
                "broker": True,
                "draining": False,
                "blobs": True,
            }
        page = await scrape(http, f"{base}/metrics")
        assert "kiln_imports_in_flight" in page.families
        queues = {labels["queue"] for labels in page.labels("kiln_queue_depth_messages")}
        assert {"kiln.image.create", "kiln.image.delete", "kiln.dead-letter"} <= queues
        assert "kiln_outbox_backlog_messages" in page.families
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(f"{base}/healthz")


async def test_worker_without_side_port(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    config = settings(tmp_path, worker_http_port=0)
    async with processes.worker_process(config) as worker:
        assert worker.running


async def test_gateway_readiness_fails_first_on_shutdown(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Leaving the gateway: /readyz answers 503 during the grace period, while requests are
    still served; then the listener closes."""
    config = settings(tmp_path, shutdown_grace_seconds=1.0)
    base = f"http://127.0.0.1:{config.http_port}"
    stop, stopped = asyncio.Event(), asyncio.Event()

    async def gateway() -> None:
        async with processes.gateway_process(config):
            await stop.wait()
        stopped.set()

    task = asyncio.create_task(gateway())
    try:
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.05)  # waiting for the gateway to listen
            stop.set()
            await asyncio.sleep(0.1)  # the shutdown starts
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["draining"] is True
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200  # alive, and still answering
            assert not stopped.is_set()
            await task
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(f"{base}/healthz")
