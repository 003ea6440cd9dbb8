"""Cancelling a running create stops the import, removes its partial bytes and the image, and
ends the operation with code 1 CANCELLED: within a second, on the gateway's cancel notice, with
the lease renewal as the fallback; other sources: disks, snapshots, none configured."""

import asyncio
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

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
from worker.cancels import CancelNotices
from worker.config import WorkerConfig
from worker.leases import Interruption, LeaseKeeper

# Renewals far apart, and a source that may stall as long as a test runs: only the cancel
# notice can stop an import within NOTICED seconds.
SLOW_RENEWALS = {"lease_seconds": 30.0, "renew_every": 10.0, "idle_timeout": 60.0}
NOTICED = 1.0


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


async def _streaming(source: Source, temp_files: Callable[[], list[Path]]) -> None:
    await source.streaming.wait()
    await wait_until(temp_files)  # partial bytes are on disk


async def test_a_cancel_notice_stops_the_import_within_a_second(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    temp_files: Callable[[], list[Path]],
) -> None:
    await start_worker(**SLOW_RENEWALS)
    image_id, op_id = await gateway.create(uri=source.url("/slow/data.raw"))
    await _streaming(source, temp_files)

    async with asyncio.timeout(NOTICED):
        await gateway.request_cancel(op_id)
        await source.closed.wait()
        await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None and op.error.code == Code.CANCELLED
    assert await gateway.image(image_id) is None
    assert temp_files() == []


async def test_deleting_a_creating_image_stops_its_import_within_a_second(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    temp_files: Callable[[], list[Path]],
) -> None:
    await start_worker(**SLOW_RENEWALS)
    image_id, create_op = await gateway.create(uri=source.url("/slow/data.raw"))
    await _streaming(source, temp_files)

    async with asyncio.timeout(NOTICED):
        delete_op = await gateway.delete(image_id)
        await source.closed.wait()
        await events.operation_done(create_op)
        await events.operation_done(delete_op)
        await wait_until(lambda: not temp_files())

    create = await gateway.operation(create_op)
    assert create.error is not None and create.error.code == Code.CANCELLED
    assert await gateway.image(image_id) is None


async def test_without_the_notice_the_lease_renewal_still_stops_the_import(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    temp_files: Callable[[], list[Path]],
) -> None:
    renew_every = 3.0
    await start_worker(lease_seconds=9.0, renew_every=renew_every, idle_timeout=60.0)
    image_id, op_id = await gateway.create(uri=source.url("/slow/data.raw"))
    await _streaming(source, temp_files)

    await gateway.request_cancel(op_id, notify=False)
    with pytest.raises(TimeoutError):  # nothing but the renewal would stop it
        await asyncio.wait_for(source.closed.wait(), NOTICED)
    async with asyncio.timeout(renew_every):
        await source.closed.wait()
        await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None and op.error.code == Code.CANCELLED
    assert await gateway.image(image_id) is None
    assert temp_files() == []


async def test_a_notice_without_a_cancel_stops_nothing(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    temp_files: Callable[[], list[Path]],
    logs: list[MutableMapping[str, Any]],
) -> None:
    await start_worker(**SLOW_RENEWALS)
    image_id, op_id = await gateway.create(uri=source.url("/slow/data.raw"))
    await _streaming(source, temp_files)

    await gateway.notify_cancel(op_id)
    await wait_until(lambda: any(e["event"] == "lease.cancel_noticed" for e in logs))
    source.release.set()
    await events.operation_done(op_id)

    assert not source.closed.is_set()
    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.READY


async def test_a_notice_heard_before_the_work_starts_stops_it_at_once(
    gateway: GatewayDouble, config: WorkerConfig
) -> None:
    config = msgspec.structs.replace(config, **SLOW_RENEWALS)
    _, op_id = await gateway.create(
        uri="http://127.0.0.1/x", publish=False, lease_owner=config.worker_id
    )
    await gateway.request_cancel(op_id, notify=False)
    notices = CancelNotices()
    notices.heard(op_id)  # between the claim and the start of the work

    async with asyncio.timeout(NOTICED):
        outcome = await LeaseKeeper(gateway.db, config, notices).hold(op_id, asyncio.Event().wait())

    assert outcome is Interruption.CANCELLED


def test_notices_of_operations_not_held_are_remembered_a_while() -> None:
    notices = CancelNotices(remembered=2)
    for op_id in ("opr-1", "opr-2", "opr-3"):
        notices.heard(op_id)

    with notices.watch("opr-1") as first, notices.watch("opr-3") as third:
        assert not first.is_set() and third.is_set()
    with notices.watch("opr-3") as again:
        assert not again.is_set()  # a remembered notice wakes one watch


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
