"""Test helpers for the worker tests: a stand-in for the gateway's write path, an event log fed
by a `kiln.events` subscriber, and waiting on conditions with a deadline."""

import asyncio
import collections
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from bus.base import Bus, Delivery
from bus.outbox_publisher import publish_outbox
from contracts.commands import (
    CreateImage,
    CreateParams,
    DeleteImage,
    ImageSource,
    command_message,
    params_encoder,
)
from contracts.enums import ImageStatus
from contracts.events import CloudEvent, event_decoder
from contracts.ids import IMAGE_PREFIX, OPERATION_PREFIX, new_id
from contracts.names import EVENTS_EXCHANGE
from contracts.notices import cancel_notice
from contracts.operations import CreateImageMetadata, DeleteImageMetadata, OperationMetadata
from contracts.outbox_message import OutboxMessage
from runtime.clock import now_us
from store import image_events, images, operations, outbox_table
from store.db import Database
from store.images import ImageRecord, ImageSpec
from store.operations import OperationRecord
from support.images import HITS
from worker.blobs import FileBlobStore
from worker.service import Worker

WAIT = 8.0  # seconds a test waits for something that must happen
FOLDER = "b1gtestfolder"  # the folder of GatewayDouble's images
OTHER_FOLDER = "b1gotherfolder"
MiB = 1 << 20
STREAMING = web.AppKey("streaming", asyncio.Event)
RELEASE = web.AppKey("release", asyncio.Event)
CLOSED = web.AppKey("closed", asyncio.Event)

WorkerFactory = Callable[..., Awaitable[Worker]]


async def store_bytes(blobs: FileBlobStore, data: bytes) -> str:
    """Store `data` as a blob, as an import does; its digest."""
    async with blobs.blob_writer() as writer:
        await writer.write(data)
        return (await writer.commit()).digest


class Source:
    """The HTTP image source: `/img/<name>` serves a file, `/slow/<name>` sends 2 MiB of it and
    then stalls until the test (or teardown) releases it; `closed` is set when a stalled
    request's client closes the connection."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.hits: collections.Counter[str] = app[HITS]
        self.streaming: asyncio.Event = app[STREAMING]
        self.release: asyncio.Event = app[RELEASE]
        self.closed: asyncio.Event = app[CLOSED]
        self.port = port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def wait_until(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll `check` (a function, or a coroutine function) until it gives something truthy;
    fail the test after `timeout` seconds."""

    async def value() -> Any:
        result = check()
        return await result if inspect.isawaitable(result) else result

    async with asyncio.timeout(timeout):
        while not (result := await value()):
            await asyncio.sleep(0.02)
    return result


class GatewayDouble:
    """Test double of the gateway's writes: the same rows, in one transaction each, then the
    outbox rows published and marked sent (unless `publish=False`, to leave them to the relay)."""

    def __init__(self, db: Database, bus: Bus, folder_id: str = FOLDER) -> None:
        self.db = db
        self.bus = bus
        self.folder_id = folder_id

    async def create(
        self,
        *,
        requested_min_disk_size: int = 0,
        spec: ImageSpec | None = None,
        publish: bool = True,
        lease_owner: str | None = None,
        lease_seconds: float = 300.0,
        **source: str,
    ) -> tuple[str, str]:
        """A create from `uri=`, `image_id=`, `disk_id=` or `snapshot_id=`: (image id, op id)."""
        now = now_us()
        image = ImageRecord(
            id=new_id(IMAGE_PREFIX),
            folder_id=self.folder_id,
            status=ImageStatus.CREATING,
            created_at=now,
            spec=spec or ImageSpec(),
        )
        params = CreateParams(
            source=ImageSource(**source), requested_min_disk_size=requested_min_disk_size
        )
        op = self._operation(
            operations.CREATE, image.id, CreateImageMetadata(image_id=image.id), now
        )
        op.params = params_encoder.encode(params)
        op.lease_owner, op.lease_until = lease_owner, now + int(lease_seconds * 1e6)
        command = CreateImage(
            command_id=op.id, operation_id=op.id, image_id=image.id, request_id="req-test"
        )
        async with self.db.transaction() as conn:
            await images.insert(conn, image)
            await operations.insert(conn, op)
            rows = [
                *await image_events.record(conn, [(image, [("created", op.id, None)])]),
                await outbox_table.add(conn, command_message(command), now),
            ]
        if publish:
            await self.publish(rows)
        return image.id, op.id

    async def delete(self, image_id: str, *, notify: bool = True) -> str:
        """Image to DELETING (cancelling an open create, with a cancel notice unless
        `notify=False`: a notice lost), a delete operation and its command."""
        now = now_us()
        op = self._operation(
            operations.DELETE, image_id, DeleteImageMetadata(image_id=image_id), now
        )
        command = DeleteImage(
            command_id=op.id, operation_id=op.id, image_id=image_id, request_id="req-test"
        )
        async with self.db.transaction() as conn:
            image = (await images.get_locked(conn, [image_id])).get(image_id)
            assert image is not None and image.status is not ImageStatus.DELETING
            was, image.status = image.status, ImageStatus.DELETING
            await images.replace_many(conn, [image])
            notices = []
            if was is ImageStatus.CREATING:
                for other in await operations.page_for_resource(conn, image_id, None, 100):
                    if other.kind == operations.CREATE and not other.done:
                        await operations.request_cancel(conn, [other.id], now)
                        if notify and other.lease_owner is not None:
                            notices.append(cancel_notice(other.id, "req-test"))
            await operations.insert(conn, op)
            rows = [
                *await image_events.record(conn, [(image, [("deleting", op.id, None)])]),
                await outbox_table.add(conn, command_message(command), now),
                *await outbox_table.add_many(conn, notices, now),
            ]
        await self.publish(rows)
        return op.id

    async def request_cancel(self, operation_id: str, *, notify: bool = True) -> None:
        """The part of a cancel that a worker holding the lease acts on: the request, and the
        cancel notice unless `notify=False` (a notice lost)."""
        async with self.db.transaction() as conn:
            now = now_us()
            await operations.request_cancel(conn, [operation_id], now)
            notices = [cancel_notice(operation_id, "req-test")] if notify else []
            rows = await outbox_table.add_many(conn, notices, now)
        await self.publish(rows)

    async def notify_cancel(self, operation_id: str) -> None:
        """A cancel notice alone, with no cancel requested: stray, or stale."""
        await publish_outbox(self.bus, [cancel_notice(operation_id, "req-test")])

    async def publish(self, rows: list[OutboxMessage]) -> None:
        await publish_outbox(self.bus, rows)
        async with self.db.transaction() as conn:
            await outbox_table.mark_sent(conn, [row.seq for row in rows], now_us())

    async def operation(self, operation_id: str) -> OperationRecord:
        async with self.db.transaction() as conn:
            op = await operations.get(conn, operation_id)
        assert op is not None
        return op

    async def image(self, image_id: str) -> ImageRecord | None:
        async with self.db.transaction() as conn:
            return await images.get(conn, image_id)

    def _operation(
        self, kind: str, image_id: str, metadata: OperationMetadata, now: int
    ) -> OperationRecord:
        return OperationRecord(
            id=new_id(OPERATION_PREFIX),
            resource_id=image_id,
            folder_id=self.folder_id,
            kind=kind,
            description=kind,
            created_by="test-subject",
            created_at=now,
            modified_at=now,
            metadata=metadata,
            lease_until=now + operations.PENDING_GRACE_US,
        )


class Received(msgspec.Struct, frozen=True):
    routing_key: str
    event: CloudEvent


class EventLog:
    """Every event published to `kiln.events`, deduplicated by event id (delivery is
    at-least-once), in arrival order."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._seen: set[str] = set()
        self._changed = asyncio.Condition()

    async def attach(self, bus: Bus) -> None:
        await bus.subscribe(EVENTS_EXCHANGE, ["#"], self._on_event)

    async def _on_event(self, delivery: Delivery) -> None:
        event = event_decoder.decode(delivery.body)
        async with self._changed:
            if event.id not in self._seen:
                self._seen.add(event.id)
                self.received.append(Received(delivery.routing_key, event))
            self._changed.notify_all()

    def of(self, image_id: str) -> list[CloudEvent]:
        """One image's events, in sequence order."""
        found = [r.event for r in self.received if r.event.subject == image_id]
        return sorted(found, key=lambda event: int(event.sequence))

    def types(self, image_id: str) -> list[str]:
        return [event.type for event in self.of(image_id)]

    async def wait_for(self, type_: str, correlation_id: str, timeout: float = WAIT) -> CloudEvent:
        """The first event of `type_` for an operation, waiting up to `timeout` seconds."""

        def match() -> CloudEvent | None:
            return next(
                (
                    r.event
                    for r in self.received
                    if r.event.type == type_ and r.event.correlationid == correlation_id
                ),
                None,
            )

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: match() is not None)
        found = match()
        assert found is not None
        return found

    async def operation_done(self, operation_id: str) -> CloudEvent:
        return await self.wait_for("compute.operation.done", operation_id)
