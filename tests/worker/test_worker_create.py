"""Create from a URL: real images end READY with the sizes read from their headers, hostile and
missing ones end in ERROR with a precise error, a redelivered command changes nothing, and
imports beyond the worker's fetch limit wait their turn, leased and cancellable."""

import asyncio
import hashlib
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bus import OutgoingMessage
from contracts.commands import CreateImage, command_encoder
from contracts.enums import ImageStatus
from contracts.errors import Code
from contracts.images import ImageAny
from contracts.names import COMMANDS_EXCHANGE, CREATE_QUEUE
from contracts.operations import Operation
from support import hostile_images
from tests.worker.worker_testkit import (
    EventLog,
    GatewayDouble,
    MiB,
    Source,
    WorkerFactory,
    wait_until,
)

FOLDER = "b1gtestfolder"


@pytest.mark.parametrize(
    ("name", "size"),
    [("data.raw", 4 * MiB), ("data.qcow2", 4 * MiB), ("sparse.vmdk", 32 * MiB)],
)
async def test_an_image_from_a_url_ends_ready_with_its_sizes(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    images: Path,
    blob_files: Callable[[], list[Path]],
    name: str,
    size: int,
) -> None:
    await start_worker()
    content = (images / name).read_bytes()

    image_id, op_id = await gateway.create(
        uri=source.url(f"/img/{name}"), requested_min_disk_size=5 * MiB
    )
    await events.operation_done(op_id)

    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.READY
    assert (image.size, image.storage_size) == (size, len(content))
    assert image.min_disk_size == max(8 * MiB, size)  # max(requested, size), 4 MiB steps
    assert image.blob_digest == hashlib.sha256(content).hexdigest()
    assert [p.name for p in blob_files()] == [image.blob_digest]
    op = await gateway.operation(op_id)
    assert op.done and op.error is None
    assert isinstance(op.response, ImageAny)
    assert (op.response.id, op.response.status) == (image_id, ImageStatus.READY)
    assert op.response.size == str(size)


async def test_subscribers_see_created_started_ready_and_done_in_sequence(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, source: Source
) -> None:
    await start_worker()

    image_id, op_id = await gateway.create(uri=source.url("/img/data.qcow2"))
    await events.operation_done(op_id)

    received = [r for r in events.received if r.event.subject == image_id]
    assert [r.event.type for r in received] == [
        "compute.image.created",
        "compute.image.import_started",
        "compute.image.ready",
        "compute.operation.done",
    ]
    assert [r.event.sequence for r in received] == ["1", "2", "3", "4"]
    assert [r.routing_key for r in received][2:] == [
        f"compute.image.ready.{FOLDER}",
        f"compute.operation.done.{FOLDER}",
    ]
    assert {r.event.correlationid for r in received} == {op_id}
    assert received[2].event.data["status"] == "READY"
    done = msgspec.convert(received[3].event.data, Operation)
    assert done.done and isinstance(done.response, ImageAny)


async def test_a_hostile_image_ends_in_error_and_leaves_no_bytes(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    blob_root: Path,
) -> None:
    await start_worker()

    image_id, op_id = await gateway.create(uri=source.url("/img/backing.qcow2"))
    await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None
    assert (op.error.code, op.error.message) == (
        Code.INVALID_ARGUMENT,
        "qcow2 image has a backing file",
    )
    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.ERROR
    assert image.blob_digest is None
    assert [p for p in blob_root.rglob("*") if p.is_file()] == []
    assert "compute.image.failed" in events.types(image_id)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "padded-flat.vmdk",
            "image is a VMDK text descriptor: its data would be read from other files",
        ),
        ("child.vmdk", "vmdk image has a parent (parentFileNameHint)"),
        (
            "overlong.vmdk",
            "vmdk image has a corrupt header: its descriptor does not end within its sectors",
        ),
    ],
)
async def test_an_image_reading_another_file_ends_in_error_downloaded_once(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    images: Path,
    name: str,
    message: str,
) -> None:
    assert hostile_images.external_references(images / name), "qemu opens nothing else for it"
    await start_worker()

    image_id, op_id = await gateway.create(uri=source.url(f"/img/{name}"))
    await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None
    assert (op.error.code, op.error.message) == (Code.INVALID_ARGUMENT, message)
    assert source.hits[f"/img/{name}"] == 1
    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.ERROR


async def test_a_descriptor_that_crashed_the_inspector_is_refused_downloaded_once(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, source: Source
) -> None:
    """Text claiming to be a monolithicSparse VMDK once raised inside the inspector, and the
    command was redelivered and the source downloaded again until it was dead-lettered."""
    await start_worker()

    _, op_id = await gateway.create(uri=source.url("/img/sparse-claim.vmdk"))
    await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None and op.error.code == Code.INVALID_ARGUMENT, op.error
    assert source.hits["/img/sparse-claim.vmdk"] == 1


async def test_a_missing_source_ends_in_error_at_once(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, source: Source
) -> None:
    await start_worker()

    image_id, op_id = await gateway.create(uri=source.url("/img/nothing-here.qcow2"))
    await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None
    assert (op.error.code, op.error.message) == (Code.NOT_FOUND, "source answered 404 Not Found")
    assert source.hits["/img/nothing-here.qcow2"] == 1
    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.ERROR


async def test_a_redelivered_create_neither_imports_nor_announces_twice(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    logs: list[MutableMapping[str, Any]],
) -> None:
    await start_worker()
    image_id, op_id = await gateway.create(uri=source.url("/img/data.raw"))
    await events.operation_done(op_id)

    again = CreateImage(command_id=op_id, operation_id=op_id, image_id=image_id)
    message = OutgoingMessage(
        routing_key=CREATE_QUEUE, body=command_encoder.encode(again), message_id=op_id
    )
    await gateway.bus.publish(COMMANDS_EXCHANGE, [message, message])

    async def both_skipped() -> bool:
        skipped = [
            e for e in logs if e["event"] == "command.already_done" and e["operation_id"] == op_id
        ]
        return len(skipped) == 2

    await wait_until(both_skipped)
    assert source.hits["/img/data.raw"] == 1
    assert events.types(image_id).count("compute.image.ready") == 1
    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.READY


async def test_imports_beyond_the_fetch_limit_wait_their_turn_under_lease(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, source: Source
) -> None:
    await start_worker(prefetch=4, fetches=2)
    created = [await gateway.create(uri=source.url("/slow/data.raw")) for _ in range(4)]

    for _, op_id in created:  # all four run on the worker...
        await wait_until(lambda op_id=op_id: _leased(gateway, op_id))
    await wait_until(lambda: source.hits["/slow/data.raw"] == 2)
    await asyncio.sleep(0.5)  # ...two stream: time for the others to start, were there no limit
    assert source.hits["/slow/data.raw"] == 2

    source.release.set()
    for image_id, op_id in created:
        await events.operation_done(op_id)
        image = await gateway.image(image_id)
        assert image is not None and image.status is ImageStatus.READY
    assert source.hits["/slow/data.raw"] == 4


async def test_a_cancel_ends_an_import_waiting_for_its_turn(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, source: Source
) -> None:
    await start_worker(prefetch=2, fetches=1)
    streaming_id, streaming_op = await gateway.create(uri=source.url("/slow/data.raw"))
    await source.streaming.wait()
    waiting_id, waiting_op = await gateway.create(uri=source.url("/slow/data.raw"))
    await wait_until(lambda: _leased(gateway, waiting_op))

    await gateway.request_cancel(waiting_op)
    await events.operation_done(waiting_op)

    op = await gateway.operation(waiting_op)
    assert op.error is not None and op.error.code == Code.CANCELLED
    assert await gateway.image(waiting_id) is None
    assert source.hits["/slow/data.raw"] == 1  # it never fetched
    source.release.set()
    await events.operation_done(streaming_op)
    image = await gateway.image(streaming_id)
    assert image is not None and image.status is ImageStatus.READY


async def _leased(gateway: GatewayDouble, operation_id: str) -> bool:
    return (await gateway.operation(operation_id)).lease_owner is not None
