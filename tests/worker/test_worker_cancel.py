"""Cancelling a running create stops the import, removes its partial bytes and the image, and
ends the operation with code 1 CANCELLED; other sources: disks, snapshots, none configured."""

from collections.abc import Callable
from pathlib import Path

from contracts.enums import ImageStatus
from contracts.errors import Code
from tests.worker.worker_testkit import (
    EventLog,
    GatewayDouble,
    MiB,
    Source,
    WorkerFactory,
    wait_until,
)


async def test_cancel_stops_a_running_import_and_removes_everything(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    blob_root: Path,
    temp_files: Callable[[], list[Path]],
) -> None:
    await start_worker()
    image_id, op_id = await gateway.create(uri=source.url("/slow/data.raw"))
    await source.streaming.wait()
    await wait_until(temp_files)  # partial bytes are on disk

    await gateway.request_cancel(op_id)
    await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None
    assert (op.error.code, op.error.message) == (Code.CANCELLED, "operation cancelled")
    assert await gateway.image(image_id) is None
    assert temp_files() == []
    assert [p for p in blob_root.rglob("*") if p.is_file()] == []
    assert events.types(image_id)[-2:] == ["compute.operation.done", "compute.image.deleted"]


async def test_a_cancel_before_the_import_starts_imports_nothing(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, source: Source
) -> None:
    image_id, op_id = await gateway.create(uri=source.url("/img/data.raw"), publish=False)
    await gateway.request_cancel(op_id)
    await start_worker()  # its relay publishes the command

    await events.operation_done(op_id)

    assert source.hits["/img/data.raw"] == 0
    assert await gateway.image(image_id) is None
    op = await gateway.operation(op_id)
    assert op.error is not None and op.error.code == Code.CANCELLED


async def test_an_image_from_a_disk_of_the_disk_source(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog
) -> None:
    await start_worker()

    image_id, op_id = await gateway.create(disk_id="data.qcow2")
    await events.operation_done(op_id)

    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.READY
    assert image.size == 4 * MiB


async def test_a_missing_snapshot_ends_in_error(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog
) -> None:
    await start_worker()

    _, op_id = await gateway.create(snapshot_id="no-such-snapshot")
    await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None
    assert (op.error.code, op.error.message) == (
        Code.NOT_FOUND,
        "snapshot no-such-snapshot not found in folder b1gtestfolder",
    )


async def test_a_disk_without_a_disk_source_ends_in_error(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog
) -> None:
    await start_worker(disk_source_dir=None)

    _, op_id = await gateway.create(disk_id="data.qcow2")
    await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None and op.error.code == Code.FAILED_PRECONDITION
    assert "no disk source is configured" in op.error.message
