"""Updates, written in batches (api/group_commit.py): every image of the batch is read
and locked in one statement, each update makes the checks a lone one would (permission,
Idempotency-Key, existence, state, new values), then one statement per table writes every update
that passed them. A second update of an image in the same batch waits for the next."""

import msgspec

from api import authorization
from api.authorization import Permission
from api.context import RequestContext
from api.group_commit import Conflict, Written, key_claimed
from api.mutating_calls import BatchKeys, name_taken
from contracts.enums import ImageStatus
from contracts.errors import ApiError, FailedPrecondition, InvalidArgument
from contracts.images import ImageAny, UpdateImageRequest, check_disk_size, min_disk_size
from contracts.operations import Operation
from contracts.outbox_message import OutboxMessage
from runtime.clock import now_us
from store import idempotency, image_events, images, operations
from store.db import Connection, UniqueViolation
from store.idempotency import Claim
from store.images import ImageRecord, to_image
from store.operations import OperationRecord, to_operation


class PendingUpdate(msgspec.Struct, kw_only=True):
    """One update request, checked for everything that needs no database; `op` is its
    operation, whose folder is filled in once the image is read."""

    context: RequestContext
    request: UpdateImageRequest
    paths: set[str]
    op: OperationRecord
    key: Claim | None


async def write_updates(conn: Connection, batch: list[PendingUpdate]) -> Written:
    """Check each update, then write those that passed."""
    done = Written()
    locked = await images.get_locked(conn, list({p.request.image_id for p in batch}))
    keys = await BatchKeys.load(conn, (pending.key for pending in batch))
    seen: set[str] = set()
    passed: list[tuple[PendingUpdate, ImageRecord]] = []
    for index, pending in enumerate(batch):
        image_id = pending.request.image_id
        if image_id in seen:
            done.later.append(index)  # it must see the first update's result
            continue
        seen.add(image_id)
        try:
            updated = await _check(conn, keys, pending, locked.get(image_id))
        except ApiError as exc:
            done.answers[index] = exc
            continue
        if isinstance(updated, ImageRecord):
            pending.op.response = ImageAny(**msgspec.structs.asdict(to_image(updated)))
            done.answers[index] = to_operation(pending.op)
            done.started.append(pending.op)
            passed.append((pending, updated))
        elif updated is None:
            done.later.append(index)  # its Idempotency-Key is another's of this batch
        else:
            done.answers[index] = updated  # an earlier request with its Idempotency-Key
    if passed:
        done.rows = await _write(conn, passed)
    return done


async def _check(
    conn: Connection, keys: BatchKeys, pending: PendingUpdate, image: ImageRecord | None
) -> ImageRecord | Operation | None:
    """The image as updated; or the earlier operation of the key; or None to wait."""
    if image is not None:
        await authorization.require_on_image(conn, pending.context, image, Permission.UPDATE)
        pending.op.folder_id = image.folder_id
    if previous := await keys.replay(conn, pending.key):
        return previous
    if not keys.claim(pending.key):
        return None
    if image is None:
        raise authorization.missing_image(pending.request.image_id)
    if image.status is ImageStatus.DELETING:
        raise FailedPrecondition(f"image {image.id} is being deleted")
    return _updated(image, pending.request, pending.paths)


async def _write(
    conn: Connection, passed: list[tuple[PendingUpdate, ImageRecord]]
) -> list[OutboxMessage]:
    now = now_us()
    keys = [(p.key, p.op.id) for p, _ in passed if p.key is not None]
    try:
        await idempotency.insert_many(conn, keys, now)
    except UniqueViolation:
        raise key_claimed() from None
    try:
        await images.replace_many(conn, [updated for _, updated in passed])
    except UniqueViolation:
        raise Conflict(name_taken(passed[0][1])) from None
    await operations.insert_many(conn, [p.op for p, _ in passed])
    announced = [
        (updated, [("updated", p.op.id, to_image(updated)), image_events.operation_done(p.op)])
        for p, updated in passed
    ]
    return await image_events.record(conn, announced)


def _updated(image: ImageRecord, request: UpdateImageRequest, paths: set[str]) -> ImageRecord:
    changed = msgspec.structs.replace(image, spec=msgspec.structs.replace(image.spec))
    if "name" in paths:
        changed.name = request.name
    if "description" in paths:
        changed.spec.description = request.description
    if "labels" in paths:
        changed.spec.labels = request.labels
    if "minDiskSize" in paths:
        changed.min_disk_size = _min_disk_size(image, request.min_disk_size)
    return changed


def _min_disk_size(image: ImageRecord, requested: int) -> int:
    """0 (unset) resets to the image's own minimum; either way rounded up to 4 MiB."""
    check_disk_size(requested)
    if requested and requested < image.size:
        raise InvalidArgument(
            f"minDiskSize: {requested} is smaller than the image's size {image.size}"
        )
    return min_disk_size(requested, image.size)
