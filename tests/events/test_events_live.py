"""End to end on a live `kiln dev` (gateway and worker in one process): an import's events
arrive live and in order, `kiln events` prints them, and `wait()` follows the stream; and a
server without the stream still gets its waits answered by polling."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from contracts.enums import ImageStatus
from contracts.images import Image
from kiln.cli import main
from kiln.client import KilnClient, StreamEvent

T0 = "2026-01-01T00:00:00Z"
LIFE = [
    "compute.image.created",
    "compute.image.import_started",
    "compute.image.ready",
    "compute.operation.done",
]


@pytest.fixture
def live_folder() -> str:
    return f"live-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def live(kiln_dev: str, admin_token: str) -> AsyncIterator[KilnClient]:
    async with KilnClient(kiln_dev, admin_token, retries=2, backoff=0.01) as client:
        yield client


async def collect(stream: AsyncIterator[StreamEvent], count: int) -> list[StreamEvent]:
    items = []
    async for item in stream:
        items.append(item)
        if len(items) == count:
            return items
    raise AssertionError("the stream ended")


async def test_an_import_is_followed_live_in_order(
    live: KilnClient, live_folder: str, image_url: str
) -> None:
    following = asyncio.create_task(collect(live.events(live_folder), 4))
    await asyncio.sleep(0.3)  # connected: it starts at the folder's newest event
    operation = await live.create_image(folder_id=live_folder, name="disk", uri=image_url)
    items = await asyncio.wait_for(following, 20)

    assert [item.event.type for item in items] == LIFE
    assert [item.position for item in items] == [1, 2, 3, 4]
    assert {item.event.correlationid for item in items} == {operation.id}
    assert items[2].event.data["status"] == "READY"
    assert items[3].event.data["done"] is True


async def test_kiln_events_prints_a_folder_events(
    live: KilnClient, live_folder: str, image_url: str, kiln_dev: str, admin_token: str
) -> None:
    operation = await live.create_image(folder_id=live_folder, name="disk", uri=image_url)
    image = await live.wait(operation, timeout=20)
    assert isinstance(image, Image)

    def kiln(*args: str) -> str:
        env = {"KILN_URL": kiln_dev, "KILN_FOLDER": live_folder, "KILN_TOKEN": admin_token}
        result = CliRunner().invoke(main, ["events", *args], env=env)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return str(result.stdout)

    # A thread: the command runs its own event loop.
    lines = (await asyncio.to_thread(kiln, "--after", "0", "--limit", "4")).splitlines()
    # POSITION DATE TIME TYPE IMAGE OPERATION [STATUS | RESULT]
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4"]
    assert [line.split()[3] for line in lines] == LIFE
    assert all(line.split()[4:6] == [image.id, operation.id] for line in lines)
    assert lines[2].endswith("READY") and lines[3].endswith("ok")

    args = ("--after", "1", "--type", "ready", "--json", "--limit", "1")
    ready: dict[str, Any] = json.loads(await asyncio.to_thread(kiln, *args))
    assert ready["type"] == "compute.image.ready" and ready["data"]["id"] == image.id


async def test_wait_follows_the_stream(
    live: KilnClient, live_folder: str, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    call = live._http.call

    async def counted(method: str, path: str, **kwargs: Any) -> bytes:
        calls.append(path)
        return await call(method, path, **kwargs)

    monkeypatch.setattr(live._http, "call", counted)
    slow = f"{image_server}/slow/disk.qcow2"  # answers after 2 s: polling would ask ~8 times
    operation = await live.create_image(folder_id=live_folder, name="slow", uri=slow)
    started = time.monotonic()
    image = await live.wait(operation, timeout=20)

    assert isinstance(image, Image) and image.status is ImageStatus.READY
    assert time.monotonic() - started > 1.5
    assert len([path for path in calls if path.startswith("/operations/")]) <= 2, calls


def _stub_api() -> web.Application:
    """Operations and images only, no /kiln/v1/events: the operation is done on the 3rd read."""
    reads = {"n": 0}
    operation = {
        "id": "opr1",
        "description": "Create image",
        "createdAt": T0,
        "createdBy": "anonymous",
        "modifiedAt": T0,
        "done": False,
        "metadata": {
            "@type": "type.googleapis.com/yandex.cloud.compute.v1.CreateImageMetadata",
            "imageId": "img1",
        },
    }
    image = {"id": "img1", "folderId": "f1", "createdAt": T0, "status": "READY"}

    async def get_operation(_: web.Request) -> web.Response:
        reads["n"] += 1
        if reads["n"] < 3:
            return web.json_response(operation)
        response = {"@type": "type.googleapis.com/yandex.cloud.compute.v1.Image", **image}
        return web.json_response({**operation, "done": True, "response": response})

    async def get_image(_: web.Request) -> web.Response:
        return web.json_response(image)

    app = web.Application()
    app.router.add_get("/operations/opr1", get_operation)
    app.router.add_get("/compute/v1/images/img1", get_image)
    return app


async def test_wait_polls_when_the_server_has_no_stream() -> None:
    server = TestServer(_stub_api())
    await server.start_server()
    try:
        async with KilnClient(str(server.make_url("")), retries=0) as client:
            image = await client.wait("opr1", timeout=10)
            assert client._waits.supported is False
    finally:
        await server.close()
    assert isinstance(image, Image) and image.id == "img1"
