"""Image state transitions. Each takes the transaction's connection and one input, checks the
state it expects under row locks (compare-and-set), and writes its events to the outbox in the
same transaction. Bytes a transition orphans are named in its result, to delete after commit."""

from collections.abc import Sequence

import msgspec
import structlog

from contracts.enums import ImageStatus
from contracts.errors import Code
from contracts.images import ImageAny, min_disk_size
from contracts.operations import Empty, OperationResponse, Status, cancelled_status
from contracts.outbox_message import OutboxMessage
from runtime.clock import now_us
from store import bindings, events, images, operations
from store.db import Connection
from store.images import ImageRecord, ImageSpec, to_image
from store.operations import OperationRecord
from worker.leases import Lease, take_lease
from worker.observe import note_finished
from worker.sources import Imported

log = structlog.get_logger(__name__)

CANCELLED = cancelled_status()


class Transition(msgspec.Struct, kw_only=True):
    """`applied` is False when the state had already moved on (a redelivery, a race lost).
    `cancelled` tells that the create was cancelled instead. `release` names a blob that no
    image uses any more. `claimed` is the operation as a claim leased it."""

    applied: bool
    cancelled: bool = False
    messages: list[OutboxMessage] = []
    release: str | None = None
    claimed: OperationRecord | None = None


class StartImport(msgspec.Struct, frozen=True, kw_only=True):
    """Lease the create's operation and announce that its import starts."""

    image_id: str
    lease: Lease


class ImportDone(msgspec.Struct, frozen=True, kw_only=True):
    operation_id: str
    image_id: str
    result: Imported


class OperationFailed(msgspec.Struct, frozen=True, kw_only=True):
    operation_id: str
    image_id: str
    code: int
    message: str


class CancelImport(msgspec.Struct, frozen=True, kw_only=True):
    """`digest` names bytes the cancelled import stored, released if no image uses them."""

    operation_id: str
    image_id: str
    digest: str = ""


class ReleaseImage(msgspec.Struct, frozen=True, kw_only=True):
    operation_id: str
    image_id: str


async def import_started(conn: Connection, start: StartImport) -> Transition:
    """Claim the operation (not applied when another worker holds it or it is done) and
    announce the import, in one transaction; the image is locked first, as everywhere."""
    image = await images.get(conn, start.image_id, lock=True)
    op = await take_lease(conn, start.lease)
    if op is None:
        return Transition(applied=False)
    if create_interrupted(image, op) or image is None:
        return await cancel_claimed(conn, op, start.image_id)
    message = await events.record(conn, image, "import_started", op.id, to_image(image))
    return Transition(applied=True, messages=[message], claimed=op)


async def cancel_claimed(conn: Connection, op: OperationRecord, image_id: str) -> Transition:
    """End as CANCELLED a create we have just claimed, which must stop instead of starting."""
    cancel = CancelImport(operation_id=op.id, image_id=image_id)
    return msgspec.structs.replace(await cancelled(conn, cancel), claimed=op)


async def ready(conn: Connection, done: ImportDone) -> Transition:
    image, op = await _load(conn, done.image_id, done.operation_id)
    result = done.result
    if op is None or op.done:
        return Transition(applied=False, release=await _unused(conn, result.digest))
    if create_interrupted(image, op) or image is None:
        cancel = CancelImport(operation_id=op.id, image_id=done.image_id, digest=result.digest)
        return await cancelled(conn, cancel)
    if result.copied_from and not await _still_stored(conn, result.copied_from, result.digest):
        message = f"source image {result.copied_from} was deleted during the copy"
        failure = OperationFailed(
            operation_id=op.id, image_id=image.id, code=int(Code.ABORTED), message=message
        )
        return await failed(conn, failure)
    updated = ready_record(image, result)
    if not await images.replace(conn, updated, expected=ImageStatus.CREATING):
        return Transition(applied=False, release=await _unused(conn, result.digest))
    response, ready_event = ready_announcement(updated, op)
    messages = await _finish(conn, updated, op, response=response, announce=[ready_event])
    return Transition(applied=True, messages=messages)


async def failed(conn: Connection, failure: OperationFailed) -> Transition:
    """A create or delete that cannot succeed: the image goes to ERROR, the operation ends
    with the error."""
    image, op = await _load(conn, failure.image_id, failure.operation_id)
    if op is None or op.done:
        return Transition(applied=False)
    if op.kind == operations.CREATE and (create_interrupted(image, op) or image is None):
        return await cancelled(conn, CancelImport(operation_id=op.id, image_id=failure.image_id))
    error = Status(code=failure.code, message=failure.message)
    expected = ImageStatus.CREATING if op.kind == operations.CREATE else ImageStatus.DELETING
    if image is None or image.status is not expected:
        return Transition(applied=True, messages=await _finish(conn, image, op, error=error))
    broken = msgspec.structs.replace(image, status=ImageStatus.ERROR)
    if not await images.replace(conn, broken, expected=expected):
        return Transition(applied=False)
    failed_event = ("failed", op.id, to_image(broken))
    messages = await _finish(conn, broken, op, error=error, announce=[failed_event])
    log.info("image.failed", code=failure.code, reason=failure.message)
    return Transition(applied=True, messages=messages)


async def cancelled(conn: Connection, cancel: CancelImport) -> Transition:
    """End a create as CANCELLED; a CREATING image is removed (a DELETING one is left to its
    delete operation)."""
    image, op = await _load(conn, cancel.image_id, cancel.operation_id)
    if op is None or op.done:
        return Transition(applied=False, release=await _unused(conn, cancel.digest))
    messages = await _finish(conn, image, op, error=CANCELLED)
    if image is not None and image.status is ImageStatus.CREATING:
        messages.append(await events.record(conn, image, "deleted", op.id, to_image(image)))
        await _remove(conn, image)
    log.info("image.import_cancelled")
    release = await _unused(conn, cancel.digest)
    return Transition(applied=True, cancelled=True, messages=messages, release=release)


async def deleted(conn: Connection, request: ReleaseImage) -> Transition:
    """Remove a DELETING image, ending any create still open on it as CANCELLED."""
    image, op = await _load(conn, request.image_id, request.operation_id)
    if op is None or op.done:
        return Transition(applied=False)
    if image is None:
        return Transition(applied=True, messages=await _finish(conn, None, op, response=Empty()))
    if image.status is not ImageStatus.DELETING:
        message = f"image {image.id} is {image.status.value}, not DELETING"
        error = Status(code=int(Code.FAILED_PRECONDITION), message=message)
        return Transition(applied=True, messages=await _finish(conn, image, op, error=error))
    messages: list[OutboxMessage] = []
    for create in await _open_creates(conn, image.id):
        messages += await _finish(conn, image, create, error=CANCELLED)
    messages.append(await events.record(conn, image, "deleted", op.id, to_image(image)))
    messages += await _finish(conn, image, op, response=Empty())
    await _remove(conn, image)
    release = await _unused(conn, image.blob_digest or "")
    return Transition(applied=True, messages=messages, release=release)


async def _load(
    conn: Connection, image_id: str, operation_id: str
) -> tuple[ImageRecord | None, OperationRecord | None]:
    """Image first, then operation: the order the gateway's delete locks them in."""
    image = await images.get(conn, image_id, lock=True)
    return image, await operations.get(conn, operation_id, lock=True)


def create_interrupted(image: ImageRecord | None, op: OperationRecord) -> bool:
    """A create must stop when cancelled, or when its image stopped being CREATING."""
    return op.cancel_requested or image is None or image.status is not ImageStatus.CREATING


def ready_record(image: ImageRecord, done: Imported) -> ImageRecord:
    """The CREATING image `image` as the import `done` leaves it: READY."""
    spec, inherit = image.spec, done.inherit or ImageSpec()
    return msgspec.structs.replace(
        image,
        status=ImageStatus.READY,
        size=done.size,
        storage_size=done.storage_size,
        min_disk_size=min_disk_size(done.requested_min_disk_size, done.size),
        blob_digest=done.digest,
        spec=msgspec.structs.replace(
            spec,
            os=spec.os or inherit.os,
            product_ids=spec.product_ids or inherit.product_ids,
            hardware_generation=spec.hardware_generation or inherit.hardware_generation,
        ),
    )


async def _still_stored(conn: Connection, image_id: str, digest: str) -> bool:
    """Whether a copy's source still holds its bytes (locked, so a delete waits for us)."""
    source = await images.get(conn, image_id, lock=True)
    return source is not None and source.blob_digest == digest


async def _finish(
    conn: Connection,
    image: ImageRecord | None,
    op: OperationRecord,
    *,
    response: OperationResponse | None = None,
    error: Status | None = None,
    announce: Sequence[events.Event] = (),
) -> list[OutboxMessage]:
    """End the operation and announce it, after the image's `announce` events (when its image
    still exists to sequence the events)."""
    now = now_us()
    if await operations.finish(conn, op.id, now, response=response, error=error):
        note_finished(op.kind, error.code if error else None)
    if image is None:
        return []
    done = finished_record(op, now, response=response, error=error)
    return await events.record_many(conn, image, [*announce, events.operation_done(done)])


def ready_announcement(image: ImageRecord, op: OperationRecord) -> tuple[ImageAny, events.Event]:
    """A create's answer once its image is READY, and the event that announces it."""
    resource = to_image(image)
    return ImageAny(**msgspec.structs.asdict(resource)), ("ready", op.id, resource)


def finished_record(
    op: OperationRecord,
    now: int,
    *,
    response: OperationResponse | None = None,
    error: Status | None = None,
) -> OperationRecord:
    """The operation as finishing it at `now` leaves it."""
    return msgspec.structs.replace(op, done=True, modified_at=now, response=response, error=error)


async def _open_creates(conn: Connection, image_id: str) -> list[OperationRecord]:
    return await operations.open_of_kind(conn, image_id, operations.CREATE)


async def _remove(conn: Connection, image: ImageRecord) -> None:
    await images.delete(conn, image.id, expected=image.status)
    await bindings.remove_all(conn, image.id)


async def _unused(conn: Connection, digest: str) -> str | None:
    if digest and await images.count_blob_users(conn, digest) == 0:
        return digest
    return None
