"""Every log line of a request and of the work it caused carries the request id and the operation
id: from the HTTP request, through the command message, into the worker, and across a re-drive."""

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import structlog
from aiohttp.test_utils import TestClient, TestServer
from ops.opskit import Source, settings, wait_done
from structlog.testing import capture_logs

from bus import Delivery, MemoryBus, Retry
from bus.outbox_publisher import OutboxPublisher
from bus.runner import Outcome, run_handler
from contracts.commands import CreateImage, command_decoder, command_message
from contracts.names import CREATE_QUEUE
from gateway.app import create_app
from kiln import processes
from store import open_database, operations
from store.outbox_table import SentMarker
from support.auth import bearer
from support.auth import gateway_settings as auth_settings
from worker.config import WorkerConfig
from worker.handlers import consuming
from worker.reconciler import Reconciler

FOLDER = "b1gops"
# What the worker logs while it imports an image from a URL.
WORKER_EVENTS = {"source.open", "image.imported", "image.import_settled"}


async def test_request_and_operation_ids_reach_the_worker_logs(
    tmp_path: Path, source: Source, http: aiohttp.ClientSession
) -> None:
    config = settings(tmp_path)
    base = f"http://127.0.0.1:{config.http_port}"
    request = {"folderId": FOLDER, "name": "traced", "uri": source.url()}
    with capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        async with processes.dev_process(config):
            headers = {"X-Request-Id": "ops-trace-1"}
            async with http.post(f"{base}/compute/v1/images", json=request, headers=headers) as r:
                assert r.status == 200 and r.headers["X-Request-Id"] == "ops-trace-1"
                created = await r.json()
            done = await wait_done(http, base, created["id"])
    assert "error" not in done, done
    operation_id, image_id = created["id"], created["metadata"]["imageId"]

    # The create's lines and its work's (the client's polls are requests of their own).
    of_operation = [
        entry
        for entry in logs
        if entry.get("operation_id") == operation_id and entry.get("method") != "GET"
    ]
    assert {entry["event"] for entry in of_operation} >= WORKER_EVENTS
    for entry in of_operation:
        assert entry.get("request_id") == "ops-trace-1", entry
    for entry in logs:
        if entry["event"] in WORKER_EVENTS:
            assert entry["operation_id"] == operation_id, entry
            assert entry["image_id"] == image_id, entry
    posts = [e for e in logs if e["event"] == "http.request" and e.get("method") == "POST"]
    assert posts and posts[0]["request_id"] == "ops-trace-1"
    assert posts[0]["operation_id"] == operation_id
    assert posts[0]["route"] == "/compute/v1/images" and posts[0]["status"] == "200"


async def test_a_redriven_command_keeps_its_request_id(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'kiln.db'}")
    bus = MemoryBus()
    await bus.start()
    try:
        app = await create_app(auth_settings(), db, bus)
        async with TestClient(TestServer(app), headers=bearer()) as client:
            request = {"folderId": FOLDER, "uri": "https://images.example.com/x.qcow2"}
            headers = {"X-Request-Id": "ops-redrive-1"}
            response = await client.post("/compute/v1/images", json=request, headers=headers)
            operation: dict[str, Any] = await response.json()
        async with db.transaction() as conn:
            stored = await operations.get(conn, operation["id"])
            assert stored is not None and stored.request_id == "ops-redrive-1"
            # As if the worker that took it died: its lease ran out.
            await conn.execute("UPDATE operations SET lease_until = 0 WHERE id = ?", stored.id)
        config = WorkerConfig(worker_id="ops-reconciler", blob_root=tmp_path / "blobs")
        with capture_logs() as logs:
            assert (
                await Reconciler(db, OutboxPublisher(bus, SentMarker(db)), config).reconcile_once()
                == 1
            )
        async with db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT correlation_id, body FROM outbox WHERE routing_key = ? ORDER BY seq",
                "kiln.image.create",
            )
    finally:
        await bus.close()
        await db.close()
    assert len(rows) == 2  # the command the gateway sent, and the reconciler's re-drive
    redriven = command_decoder.decode(bytes(rows[-1]["body"]))
    assert isinstance(redriven, CreateImage)
    assert msgspec.structs.astuple(redriven)[1:] == (
        operation["id"],
        operation["metadata"]["imageId"],
        "ops-redrive-1",
    )
    assert rows[-1]["correlation_id"] == "ops-redrive-1"
    [redrive] = [entry for entry in logs if entry["event"] == "reconciler.redrive"]
    assert redrive["request_id"] == "ops-redrive-1"


async def test_the_bus_runners_lines_about_a_command_carry_its_ids() -> None:
    """A command's handling ends in a retry: the runner's line about it names the request and
    the operation, as the handler's lines do."""
    command = CreateImage(
        command_id="opr1", operation_id="opr1", image_id="img1", request_id="ops-retry-1"
    )
    message = command_message(command)
    delivery = Delivery(
        routing_key=message.routing_key,
        body=message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        delivery_count=2,
    )

    async def unavailable(delivery: Delivery, command: object) -> None:
        structlog.get_logger().info("handler.ran")
        raise Retry("source unavailable")

    handler = consuming(CREATE_QUEUE, unavailable)
    with capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        # Each delivery is handled in a task of its own, as both transports do.
        outcome = await asyncio.create_task(run_handler(handler, delivery, CREATE_QUEUE))
    assert outcome is Outcome.REQUEUE
    assert [entry["event"] for entry in logs] == ["handler.ran", "bus.handler_retry"]
    for entry in logs:
        assert entry["request_id"] == "ops-retry-1", entry
        assert (entry["operation_id"], entry["image_id"]) == ("opr1", "img1"), entry
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaked into this task
