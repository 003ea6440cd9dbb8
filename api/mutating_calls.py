"""What every mutating call shares: idempotency replay, operation records."""

from collections.abc import Callable, Iterable
from typing import NamedTuple

import structlog

from api import authorization
from api.authorization import Permission
from api.context import RequestContext
from contracts.enums import ImageStatus
from contracts.errors import AlreadyExists, FailedPrecondition
from contracts.ids import OPERATION_PREFIX, new_id
from contracts.operations import Operation, OperationMetadata
from contracts.outbox_message import OutboxMessage
from runtime.metrics import OPERATIONS_STARTED, operation_finished
from store import operations
from store.db import Connection
from store.idempotency import Claim, Previous, claim, find
from store.images import ImageRecord
from store.operations import OperationRecord, to_operation


async def replay(
    conn: Connection, key: Claim | None, operation_id: str, now: int
) -> Operation | None:
    """Claim the key for `operation_id`; the earlier operation if this is a repeat."""
    if key is None:
        return None
    previous = await claim(conn, key, operation_id, now)
    if previous is None:
        return None
    operation = await replayed(conn, key, previous)
    structlog.contextvars.bind_contextvars(operation_id=operation.id)
    return operation


async def replayed(conn: Connection, key: Claim, previous: Previous) -> Operation:
    """The operation an earlier request with this key started."""
    if previous.fingerprint != key.fingerprint:
        raise AlreadyExists("Idempotency-Key was already used for a different request")
    record = await operations.get(conn, previous.operation_id)
    assert record is not None, "an idempotency key always names a stored operation"
    return to_operation(record)


class BatchKeys:
    """The Idempotency-Keys of one batch of writes (api/group_commit.py): an earlier use
    of a key is replayed; a key used twice in the batch is written once, the second request after
    the batch."""

    def __init__(self, previous: dict[tuple[str, str], Previous]) -> None:
        self._previous = previous
        self._claimed: set[tuple[str, str]] = set()

    @classmethod
    async def load(cls, conn: Connection, keys: Iterable[Claim | None]) -> "BatchKeys":
        return cls(await find(conn, [key for key in keys if key is not None]))

    async def replay(self, conn: Connection, key: Claim | None) -> Operation | None:
        """The operation an earlier request with this key started, if there was one."""
        if key is None or (previous := self._previous.get((key.subject, key.key))) is None:
            return None
        return await replayed(conn, key, previous)

    def claim(self, key: Claim | None) -> bool:
        """False when another request of this batch claimed the key already."""
        if key is None:
            return True
        pair = (key.subject, key.key)
        if pair in self._claimed:
            return False
        self._claimed.add(pair)
        return True


def name_taken(image: ImageRecord) -> AlreadyExists:
    """The answer to a write that would give a second image of a folder the same name."""
    return AlreadyExists(
        f"an image named {image.name!r} already exists in folder {image.folder_id}"
    )


def new_operation(
    context: RequestContext,
    kind: str,
    resource_id: str,
    folder_id: str,
    description: str,
    metadata: OperationMetadata,
    now: int,
) -> OperationRecord:
    """A new operation of this request on a resource of `folder_id`; its id is bound to the
    request's log lines."""
    record = OperationRecord(
        id=new_id(OPERATION_PREFIX),
        resource_id=resource_id,
        folder_id=folder_id,
        kind=kind,
        description=description,
        created_by=context.subject,
        created_at=now,
        modified_at=now,
        metadata=metadata,
        lease_until=now + operations.PENDING_GRACE_US,
        request_id=context.request_id,
    )
    structlog.contextvars.bind_contextvars(operation_id=record.id)
    return record


class Answer(NamedTuple):
    """A write's answer, and the outbox rows its adapter publishes now that it committed."""

    operation: Operation
    messages: list[OutboxMessage]


def count_started(op: OperationRecord) -> None:
    """Count an operation a request created (and, if it ended at once, its end)."""
    OPERATIONS_STARTED.labels(kind=op.kind).inc()
    if op.done:
        operation_finished(op.kind, op.error.code if op.error else None)


class ImageChange(NamedTuple):
    """What `change_image` hands a method that may go on: its locked image, its new operation."""

    image: ImageRecord
    op: OperationRecord


async def change_image(
    conn: Connection,
    context: RequestContext,
    image_id: str,
    permission: Permission,
    new_op: Callable[[str], OperationRecord],
    key: Claim | None,
    now: int,
) -> ImageChange | Operation:
    """The image the caller may change, locked, and the operation `new_op` makes for it (given
    the image's folder); or the earlier operation of the same Idempotency-Key, replayed before
    any check, as a repeat must be answered the same. A missing image is 404, one being deleted
    FAILED_PRECONDITION."""
    image = await authorization.image_or_none(conn, context, image_id, permission, lock=True)
    op = new_op(image.folder_id if image else "")
    if previous := await replay(conn, key, op.id, now):
        return previous
    if image is None:
        raise authorization.missing_image(image_id)
    if image.status is ImageStatus.DELETING:
        raise FailedPrecondition(f"image {image_id} is being deleted")
    return ImageChange(image, op)
