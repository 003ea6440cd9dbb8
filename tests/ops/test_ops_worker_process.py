"""A real `kiln worker` (RabbitMQ vhost, PostgreSQL database) serves its side port, logs the ids
of the request behind each command, and on SIGTERM fails readiness first, finishes the import in
flight while still answering probes, and exits 0.

(That a SIGTERM mid-batch loses nothing is tests/faults/test_faults_sigterm.py.)"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from ops.opskit import IMAGE, scrape
from pytest_aiohttp import AiohttpServer

from kiln.processes import DRAIN_SECONDS
from support.kiln_processes import Deployment, free_port, wait_until


class Held:
    """Serves the image's first 64 KiB, then the rest once `release` is set."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.streaming, self.release = asyncio.Event(), asyncio.Event()
        self.url = ""

    async def serve(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(self.data)
        await response.prepare(request)
        await response.write(self.data[: 64 * 1024])
        self.streaming.set()
        await self.release.wait()
        await response.write(self.data[64 * 1024 :])
        return response


@pytest.fixture
async def held(image_dir: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[Held]:
    source = Held((image_dir / IMAGE).read_bytes())
    app = web.Application()
    app.router.add_get("/held", source.serve)
    server = await aiohttp_server(app)
    source.url = f"http://127.0.0.1:{server.port}/held"
    yield source
    source.release.set()


@pytest.fixture
async def deployment(
    tmp_path: Path, postgres_url: str, rabbit_url: str
) -> AsyncIterator[Deployment]:
    kiln = Deployment(tmp_path, database_url=postgres_url, broker_url=rabbit_url)
    try:
        yield kiln
    finally:
        await kiln.close()


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json()


@pytest.mark.timeout(60)
async def test_worker_side_port_and_graceful_stop(
    deployment: Deployment, held: Held, http: aiohttp.ClientSession
) -> None:
    gateway = await deployment.gateway()
    port = free_port()
    worker = await deployment.worker(worker_http_port=port)
    side = f"http://127.0.0.1:{port}"

    assert await get_json(http, f"{side}/healthz") == (200, {"status": "ok"})
    status, ready = await get_json(http, f"{side}/readyz")
    assert status == 200 and ready["ready"] is True, ready

    async def queues_seen() -> bool:
        page = await scrape(http, f"{side}/metrics")
        queues = {labels["queue"] for labels in page.labels("kiln_queue_depth_messages")}
        return {"kiln.image.create", "kiln.image.delete", "kiln.dead-letter"} <= queues

    await wait_until(queues_seen, 10, "queue depths read from RabbitMQ")

    request = {"folderId": "b1gops", "name": "held", "uri": held.url}
    headers = {"X-Request-Id": "ops-process-1"}
    async with http.post(
        f"{gateway.url}/compute/v1/images", json=request, headers=headers
    ) as response:
        assert response.status == 200
        operation_id = (await response.json())["id"]
    await asyncio.wait_for(held.streaming.wait(), 15)

    worker.terminate()

    async def not_ready() -> bool:
        status, body = await get_json(http, f"{side}/readyz")
        return status == 503 and body["draining"] is True

    await wait_until(not_ready, 5, "the worker's readiness failing on SIGTERM")
    assert worker.running and not worker.logged("image.import_settled")
    page = await scrape(http, f"{side}/metrics")  # still served while draining
    assert page.value("kiln_imports_in_flight") == 1

    held.release.set()
    assert await worker.wait(DRAIN_SECONDS) == 0, worker.text()[-3000:]
    [settled] = worker.logged("image.import_settled", operation_id=operation_id)
    assert settled["ready"] is True and settled["request_id"] == "ops-process-1"
    assert worker.logged("source.open", operation_id=operation_id, request_id="ops-process-1")
    assert worker.logged("worker.stopped")
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(f"{side}/healthz")


@pytest.mark.timeout(60)
async def test_two_workers_of_one_host_share_the_default_side_port(
    deployment: Deployment, http: aiohttp.ClientSession
) -> None:
    """Neither is given a side port: the first takes 9090 (unless something else holds it),
    the second finds it in use and serves on a free port, saying so in one line."""
    del deployment.settings["worker_http_port"]  # as a plain `kiln worker` starts
    first, second = await deployment.worker(), await deployment.worker()

    urls = [worker.logged("worker.http_listening")[0]["url"] for worker in (first, second)]
    assert urls[0] != urls[1]
    for url in urls:
        assert await get_json(http, f"{url}/healthz") == (200, {"status": "ok"})
    [moved] = second.logged("worker side port 9090 in use")
    assert (moved["level"], moved["url"]) == ("warning", urls[1])
    assert moved["serving"] == "/metrics, /healthz, /readyz"
    assert await deployment.close() == []
