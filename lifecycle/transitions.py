"""The image and operation state machine: one transition per change, each written once and
batch-native. `run` locks the rows of a whole batch, decides every change in memory against
them (in image order), and writes the images, operations and events with one statement per
table; a batch of one is the single case.

| change          | from                     | to                                          |
|-----------------|--------------------------|---------------------------------------------|
| AcceptDelete    | image not DELETING       | DELETING, open create asked to stop; delete |
|                 |                          | operation and command; `deleting`           |
| RequestCancel   | create open              | cancel asked for (a notice if leased); one  |
|                 |                          | no worker holds ends as CancelImport does   |
| StartImport     | create open, unleased    | leased; `import_started`                    |
| ImportDone      | image CREATING           | image READY; create done; `ready`           |
| OperationFailed | image CREATING/DELETING  | image ERROR; operation failed; `failed`     |
| CancelImport    | create open              | create CANCELLED; a CREATING image removed  |
| ReleaseImage    | image DELETING           | image removed, open creates CANCELLED       |

A create whose image stopped being CREATING, or whose cancel was asked for, ends as
CANCELLED whatever change reaches it first. A change whose operation is done already is not
applied (a redelivery, a race lost)."""

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import msgspec

from contracts.commands import DeleteImage, command_message
from contracts.enums import ImageStatus
from contracts.errors import Code
from contracts.images import ImageAny, min_disk_size
from contracts.operations import Empty, OperationResponse, Status, cancelled_status
from contracts.outbox_message import OutboxMessage
from lifecycle.changes import (
    AcceptDelete,
    CancelImport,
    Change,
    ImportDone,
    Imported,
    OperationFailed,
    ReleaseImage,
    RequestCancel,
    StartImport,
)
from lifecycle.locked_rows import Finished, LockedRows
from runtime.metrics import operation_finished
from store import images, operations
from store.db import Connection
from store.images import ImageRecord, ImageSpec, to_image
from store.operations import OperationRecord

CANCELLED = cancelled_status()


class Transition(msgspec.Struct, kw_only=True):
    """`applied` is False when the state had already moved on. `cancelled` tells that the
    create was cancelled instead. `release` names bytes no image uses any more, to delete
    after commit. `claimed` is the operation as a StartImport leased it. `finished` names
    the operations it ended, for metrics and logs."""

    applied: bool
    cancelled: bool = False
    messages: list[OutboxMessage] = []
    release: str | None = None
    claimed: OperationRecord | None = None
    finished: list[Finished] = []


async def run(
    conn: Connection,
    changes: Sequence[Change],
    locked: Mapping[str, ImageRecord] = MappingProxyType({}),
) -> list[Transition]:
    """Carry out every change in the caller's transaction; their results, in their order.
    `locked` holds images the caller's transaction has locked and read already."""
    rows = LockedRows(conn)
    await rows.lock(changes, locked)
    results: dict[int, Transition] = {}
    for index in sorted(range(len(changes)), key=lambda i: changes[i].image_id):
        change = changes[index]
        results[index] = TRANSITIONS[type(change)](rows, change)
    await rows.write()
    answered = [results[index] for index in range(len(changes))]
    for result in answered:
        result.messages = rows.as_written(result.messages)
    await _keep_used_bytes(conn, answered)
    return answered


def count_finished(result: Transition) -> None:
    """Count the operations a committed transition ended."""
    for finished in result.finished:
        operation_finished(finished.kind, finished.code)


def delete_accepted(rows: LockedRows, accept: AcceptDelete) -> Transition:
    """The image goes DELETING (not applied when it is already), its open create is asked to
    stop, and the delete's operation and command are written."""
    image, op = rows.image(accept.image_id), accept.operation
    if image is None or image.status is ImageStatus.DELETING:
        return Transition(applied=False)
    deleting = msgspec.structs.replace(image, status=ImageStatus.DELETING)
    rows.replace(deleting)
    rows.insert(op)
    messages = rows.announce(deleting, [("deleting", op.id, to_image(deleting))])
    command = DeleteImage(
        command_id=op.id, operation_id=op.id, image_id=image.id, request_id=op.request_id
    )
    messages.append(rows.send(command_message(command)))
    for create in rows.open_creates(image.id):
        messages += rows.ask_to_stop(create, op.request_id)
    return Transition(applied=True, messages=messages)


def cancel_requested(rows: LockedRows, request: RequestCancel) -> Transition:
    """Ask the open create to stop: a worker that may be running it is sent a notice; one
    that no worker holds (or whose lease ran out) ends here, as `cancelled`."""
    op = rows.operation(request.operation_id)
    if op is None or op.done:
        return Transition(applied=False)
    notices = rows.ask_to_stop(op, request.request_id)
    if op.lease_owner is not None and op.lease_until >= rows.now:
        return Transition(applied=True, messages=notices)
    ended = cancelled(rows, CancelImport(operation_id=op.id, image_id=request.image_id))
    ended.messages = notices + ended.messages
    return ended


def import_started(rows: LockedRows, start: StartImport) -> Transition:
    """Claim the operation (not applied when another worker holds it or it is done) and
    announce the import."""
    op = rows.claim(start.operation_id)
    if op is None:
        return Transition(applied=False)
    image = rows.image(start.image_id)
    if image is None or create_interrupted(image, op):
        cancel = CancelImport(operation_id=op.id, image_id=start.image_id)
        return msgspec.structs.replace(cancelled(rows, cancel), claimed=op)
    messages = rows.announce(image, [("import_started", op.id, to_image(image))])
    return Transition(applied=True, messages=messages, claimed=op)


def ready(rows: LockedRows, done: ImportDone) -> Transition:
    image, op, result = rows.image(done.image_id), rows.operation(done.operation_id), done.result
    if op is None or op.done:
        return Transition(applied=False, release=result.digest)
    if image is None or create_interrupted(image, op):
        cancel = CancelImport(operation_id=op.id, image_id=done.image_id, digest=result.digest)
        return cancelled(rows, cancel)
    if result.copied_from and not rows.still_stored(result.copied_from, result.digest):
        message = f"source image {result.copied_from} was deleted during the copy"
        failure = OperationFailed(
            operation_id=op.id, image_id=image.id, code=int(Code.ABORTED), message=message
        )
        return failed(rows, failure)
    updated = ready_record(image, result)
    rows.replace(updated)
    resource = to_image(updated)
    response = ImageAny(**msgspec.structs.asdict(resource))
    announce = [("ready", op.id, resource)]
    messages, finished = rows.finish(updated, op, response=response, announce=announce)
    return Transition(applied=True, messages=messages, finished=[finished])


def failed(rows: LockedRows, failure: OperationFailed) -> Transition:
    """A create or delete that cannot succeed: the image goes to ERROR, the operation ends
    with the error."""
    image, op = rows.image(failure.image_id), rows.operation(failure.operation_id)
    if op is None or op.done:
        return Transition(applied=False)
    if op.kind == operations.CREATE and (image is None or create_interrupted(image, op)):
        return cancelled(rows, CancelImport(operation_id=op.id, image_id=failure.image_id))
    error = Status(code=failure.code, message=failure.message)
    expected = ImageStatus.CREATING if op.kind == operations.CREATE else ImageStatus.DELETING
    if image is None or image.status is not expected:
        return _ended(rows, image, op, error=error)
    broken = msgspec.structs.replace(image, status=ImageStatus.ERROR)
    rows.replace(broken)
    announce = [("failed", op.id, to_image(broken))]
    messages, finished = rows.finish(broken, op, error=error, announce=announce)
    return Transition(applied=True, messages=messages, finished=[finished])


def cancelled(rows: LockedRows, cancel: CancelImport) -> Transition:
    """End a create as CANCELLED; a CREATING image is removed (a DELETING one is left to its
    delete operation)."""
    image, op = rows.image(cancel.image_id), rows.operation(cancel.operation_id)
    if op is None or op.done:
        return Transition(applied=False, release=cancel.digest or None)
    messages, finished = rows.finish(image, op, error=CANCELLED)
    if image is not None and image.status is ImageStatus.CREATING:
        messages += rows.announce(image, [("deleted", op.id, to_image(image))])
        rows.remove(image)
    return Transition(
        applied=True,
        cancelled=True,
        messages=messages,
        release=cancel.digest or None,
        finished=[finished],
    )


def deleted(rows: LockedRows, request: ReleaseImage) -> Transition:
    """Remove a DELETING image, ending any create still open on it as CANCELLED."""
    image, op = rows.image(request.image_id), rows.operation(request.operation_id)
    if op is None or op.done:
        return Transition(applied=False)
    if image is None:
        return _ended(rows, None, op, response=Empty())
    if image.status is not ImageStatus.DELETING:
        message = f"image {image.id} is {image.status.value}, not DELETING"
        return _ended(
            rows, image, op, error=Status(code=int(Code.FAILED_PRECONDITION), message=message)
        )
    messages: list[OutboxMessage] = []
    ended: list[Finished] = []
    for create in rows.open_creates(image.id):
        cancelled_create, finished = rows.finish(image, create, error=CANCELLED)
        messages += cancelled_create
        ended.append(finished)
    messages += rows.announce(image, [("deleted", op.id, to_image(image))])
    done, finished = rows.finish(image, op, response=Empty())
    rows.remove(image)
    return Transition(
        applied=True,
        messages=messages + done,
        release=image.blob_digest or None,
        finished=[*ended, finished],
    )


def _ended(
    rows: LockedRows,
    image: ImageRecord | None,
    op: OperationRecord,
    *,
    response: OperationResponse | None = None,
    error: Status | None = None,
) -> Transition:
    """The operation ends, the image as it was."""
    messages, finished = rows.finish(image, op, response=response, error=error)
    return Transition(applied=True, messages=messages, finished=[finished])


# The transition each change runs.
TRANSITIONS: dict[type, Callable[[LockedRows, Any], Transition]] = {
    AcceptDelete: delete_accepted,
    RequestCancel: cancel_requested,
    StartImport: import_started,
    ImportDone: ready,
    OperationFailed: failed,
    CancelImport: cancelled,
    ReleaseImage: deleted,
}


def create_interrupted(image: ImageRecord, op: OperationRecord) -> bool:
    """A create must stop when cancelled, or when its image stopped being CREATING."""
    return op.cancel_requested or image.status is not ImageStatus.CREATING


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


async def _keep_used_bytes(conn: Connection, results: list[Transition]) -> None:
    """Name for release only the bytes that no image uses once the batch is written."""
    named = {result.release for result in results if result.release}
    used = await images.blobs_in_use(conn, sorted(named))
    for result in results:
        if result.release in used:
            result.release = None
