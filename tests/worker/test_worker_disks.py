"""Disks and snapshots belong to folders: a create imports only from its own folder's
`<disk source>/<folderId>/disks/` or `snapshots/`, and ids that could name a path outside them
are refused."""

from contracts.enums import ImageStatus
from contracts.errors import Code
from tests.worker.conftest import Backend
from tests.worker.worker_testkit import (
    FOLDER,
    OTHER_FOLDER,
    EventLog,
    GatewayDouble,
    MiB,
    WorkerFactory,
)


async def _error(
    gateway: GatewayDouble, events: EventLog, *, disk_id: str = "", snapshot_id: str = ""
) -> tuple[int, str]:
    """The error a create from that disk or snapshot ended with."""
    _, op_id = await gateway.create(disk_id=disk_id, snapshot_id=snapshot_id)
    await events.operation_done(op_id)
    op = await gateway.operation(op_id)
    assert op.error is not None, (disk_id, snapshot_id)
    return op.error.code, op.error.message


async def test_a_folder_cannot_import_the_disk_of_another_folder(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, backend: Backend
) -> None:
    await start_worker()

    theirs = await _error(gateway, events, disk_id="theirs.vmdk")
    nobodys = await _error(gateway, events, disk_id="nobodys.vmdk")

    assert theirs == (Code.NOT_FOUND, f"disk theirs.vmdk not found in folder {FOLDER}")
    assert nobodys == (Code.NOT_FOUND, f"disk nobodys.vmdk not found in folder {FOLDER}")
    owner = GatewayDouble(backend.db, backend.bus, folder_id=OTHER_FOLDER)
    image_id, op_id = await owner.create(disk_id="theirs.vmdk")
    await events.operation_done(op_id)
    image = await owner.image(image_id)
    assert image is not None and image.status is ImageStatus.READY
    assert image.size == 32 * MiB


async def test_a_disk_and_a_snapshot_with_the_same_id_are_different_files(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog
) -> None:
    await start_worker()

    disk_id, disk_op = await gateway.create(disk_id="same-id")
    snapshot_id, snapshot_op = await gateway.create(snapshot_id="same-id")
    await events.operation_done(disk_op)
    await events.operation_done(snapshot_op)

    disk, snapshot = await gateway.image(disk_id), await gateway.image(snapshot_id)
    assert disk is not None and disk.status is ImageStatus.READY and disk.size == 4 * MiB
    assert snapshot is not None and snapshot.status is ImageStatus.READY
    assert snapshot.size == 16 * MiB


async def test_ids_that_could_leave_the_folder_directory_are_refused(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, backend: Backend
) -> None:
    await start_worker()
    for disk_id in (f"../../{OTHER_FOLDER}/disks/theirs.vmdk", "..", "/etc/passwd"):
        code, message = await _error(gateway, events, disk_id=disk_id)
        assert code == Code.INVALID_ARGUMENT, disk_id
        assert message.startswith(f"diskId {disk_id!r} is malformed: 1 to 50 letters"), message
    for snapshot_id in ("../disks/data.qcow2", "a..b"):
        code, message = await _error(gateway, events, snapshot_id=snapshot_id)
        assert code == Code.INVALID_ARGUMENT, snapshot_id
        assert message.startswith(f"snapshotId {snapshot_id!r} is malformed"), message

    climber = GatewayDouble(backend.db, backend.bus, folder_id=f"{FOLDER}/../{OTHER_FOLDER}")
    code, message = await _error(climber, events, disk_id="theirs.vmdk")
    assert code == Code.INVALID_ARGUMENT
    assert message.startswith(f"folderId '{FOLDER}/../{OTHER_FOLDER}' is malformed")


async def test_a_link_out_of_the_folder_directory_is_refused(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog
) -> None:
    await start_worker()

    code, message = await _error(gateway, events, disk_id="link-to-theirs")

    assert code == Code.PERMISSION_DENIED
    assert message.endswith("is outside the import root")
