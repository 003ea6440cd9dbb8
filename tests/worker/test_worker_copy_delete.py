"""Copy by imageId shares the stored bytes; delete removes the image and releases its bytes
only when no other image uses them; deleting a CREATING image stops its import."""

from collections.abc import Callable
from pathlib import Path

from contracts.enums import ImageStatus, OsType
from contracts.errors import Code
from contracts.images import ImageAny, Os
from contracts.operations import Empty
from store.images import ImageSpec
from tests.worker.worker_testkit import (
    EventLog,
    GatewayDouble,
    MiB,
    Source,
    WorkerFactory,
    wait_until,
)


async def _ready_image(gateway: GatewayDouble, events: EventLog, url: str, **spec: object) -> str:
    image_id, op_id = await gateway.create(uri=url, spec=ImageSpec(**spec))  # type: ignore[arg-type]
    await events.operation_done(op_id)
    return image_id


async def test_a_copy_shares_the_bytes_and_inherits_what_was_not_set(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    blob_files: Callable[[], list[Path]],
) -> None:
    await start_worker()
    original_id = await _ready_image(
        gateway,
        events,
        source.url("/img/data.qcow2"),
        os=Os(type=OsType.LINUX),
        product_ids=["f2e-product"],
    )

    copy_id, op_id = await gateway.create(image_id=original_id, requested_min_disk_size=12 * MiB)
    await events.operation_done(op_id)

    original, copy = await gateway.image(original_id), await gateway.image(copy_id)
    assert original is not None and copy is not None
    assert copy.status is ImageStatus.READY
    assert copy.blob_digest == original.blob_digest
    assert (copy.size, copy.storage_size) == (original.size, original.storage_size)
    assert copy.min_disk_size == 12 * MiB
    assert copy.spec.os == Os(type=OsType.LINUX)
    assert copy.spec.product_ids == ["f2e-product"]
    assert len(blob_files()) == 1
    assert source.hits["/img/data.qcow2"] == 1
    op = await gateway.operation(op_id)
    assert isinstance(op.response, ImageAny) and op.response.id == copy_id


async def test_a_copy_keeps_what_its_request_set(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, source: Source
) -> None:
    await start_worker()
    original_id = await _ready_image(
        gateway, events, source.url("/img/data.raw"), os=Os(type=OsType.LINUX)
    )

    copy_id, op_id = await gateway.create(
        image_id=original_id, spec=ImageSpec(os=Os(type=OsType.WINDOWS))
    )
    await events.operation_done(op_id)

    copy = await gateway.image(copy_id)
    assert copy is not None and copy.spec.os == Os(type=OsType.WINDOWS)


async def test_a_copy_shows_the_os_it_inherited_or_the_default(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, source: Source
) -> None:
    await start_worker()
    windows_id = await _ready_image(
        gateway, events, source.url("/img/data.raw"), os=Os(type=OsType.WINDOWS)
    )
    plain_id = await _ready_image(gateway, events, source.url("/img/data.qcow2"))

    for original_id, os_type in ((windows_id, OsType.WINDOWS), (plain_id, OsType.LINUX)):
        copy_id, op_id = await gateway.create(image_id=original_id)
        ready = await events.wait_for("compute.image.ready", op_id)
        await events.operation_done(op_id)

        op = await gateway.operation(op_id)
        assert isinstance(op.response, ImageAny) and op.response.id == copy_id
        assert op.response.os == Os(type=os_type)
        assert ready.data["os"] == {"type": os_type.value}


async def test_delete_releases_the_bytes_only_with_their_last_image(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    blob_files: Callable[[], list[Path]],
) -> None:
    await start_worker()
    original_id = await _ready_image(gateway, events, source.url("/img/data.raw"))
    copy_id, copy_op = await gateway.create(image_id=original_id)
    await events.operation_done(copy_op)

    first = await gateway.delete(original_id)
    await events.operation_done(first)

    assert await gateway.image(original_id) is None
    op = await gateway.operation(first)
    assert op.done and op.response == Empty() and op.error is None
    assert len(blob_files()) == 1

    second = await gateway.delete(copy_id)
    await events.operation_done(second)

    assert await gateway.image(copy_id) is None
    assert blob_files() == []
    assert events.types(copy_id)[-3:] == [
        "compute.image.deleting",
        "compute.image.deleted",
        "compute.operation.done",
    ]


async def test_deleting_a_creating_image_stops_its_import(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    blob_root: Path,
    temp_files: Callable[[], list[Path]],
) -> None:
    await start_worker()
    image_id, create_op = await gateway.create(uri=source.url("/slow/data.raw"))
    await source.streaming.wait()
    await wait_until(temp_files)

    delete_op = await gateway.delete(image_id)
    await events.operation_done(delete_op)
    await events.operation_done(create_op)

    assert await gateway.image(image_id) is None
    create = await gateway.operation(create_op)
    assert create.error is not None and create.error.code == Code.CANCELLED
    assert (await gateway.operation(delete_op)).response == Empty()
    await wait_until(lambda: not temp_files())
    assert [p for p in blob_root.rglob("*") if p.is_file()] == []
    assert "compute.image.ready" not in events.types(image_id)
