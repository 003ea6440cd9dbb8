"""Creates, written in batches (api/group_commit.py): the checks each create makes in the
order a lone one would (folder permission, Idempotency-Key, source image), then one statement per
table for every create that passed them."""

from collections.abc import Awaitable, Callable, Hashable

import msgspec

from api import authorization
from api.authorization import Permission
from api.context import RequestContext
from api.group_commit import Conflict, Written, key_claimed
from api.mutating_calls import BatchKeys, name_taken
from contracts.commands import CreateImage, ImageSource, command_message
from contracts.enums import ImageStatus
from contracts.errors import ApiError, FailedPrecondition
from contracts.outbox_message import OutboxMessage
from runtime.clock import now_us
from store import idempotency, image_events, images, operations
from store.db import Connection, UniqueViolation
from store.idempotency import Claim
from store.images import ImageRecord, to_image
from store.operations import OperationRecord, to_operation


class PendingCreate(msgspec.Struct, kw_only=True):
    """One create request, checked for everything that needs no database."""

    context: RequestContext
    image: ImageRecord
    op: OperationRecord
    command: CreateImage
    source: ImageSource
    key: Claim | None


async def write_creates(conn: Connection, batch: list[PendingCreate]) -> Written:
    """Check each create, then write those that passed."""
    done = Written()
    checks = _Checks(conn)
    keys = await BatchKeys.load(conn, (pending.key for pending in batch))
    passed = []
    for index, pending in enumerate(batch):
        try:
            await checks.folder(pending.context, pending.image.folder_id)
            if previous := await keys.replay(conn, pending.key):
                done.answers[index] = previous
                continue
            if not keys.claim(pending.key):
                done.later.append(index)
                continue
            if pending.source.image_id:
                await checks.source(pending.context, pending.source.image_id)
        except ApiError as exc:
            done.answers[index] = exc
            continue
        done.answers[index] = to_operation(pending.op)
        done.started.append(pending.op)
        passed.append(pending)
    if passed:
        done.rows = await _insert(conn, passed)
    return done


async def _insert(conn: Connection, batch: list[PendingCreate]) -> list[OutboxMessage]:
    """Write the creates: images, operations, keys, each image's first event and command."""
    now = now_us()
    keys = [(p.key, p.op.id) for p in batch if p.key is not None]
    try:
        await idempotency.insert_many(conn, keys, now)
    except UniqueViolation:
        raise key_claimed() from None
    # Each attempt numbers a fresh copy (a batch written again must not count twice), before
    # the insert that stores the image with its "created" event's number.
    fresh = [msgspec.structs.replace(p.image, event_seq=0) for p in batch]
    numbered = [
        (image, image_events.number(image, [("created", p.op.id, to_image(image))], now))
        for image, p in zip(fresh, batch, strict=True)
    ]
    try:
        await images.insert_many(conn, fresh)
    except UniqueViolation:
        raise Conflict(name_taken(batch[0].image)) from None
    await operations.insert_many(conn, [p.op for p in batch])
    commands = [command_message(p.command) for p in batch]
    return await image_events.write(conn, numbered, now, commands)


class _Checks:
    """The read-only checks of one batch: each caller's permission on a folder, and its
    use of a source image, looked up once per batch."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._seen: dict[Hashable, ApiError | None] = {}

    async def folder(self, context: RequestContext, folder_id: str) -> None:
        async def check() -> None:
            await authorization.require_on_folder(self._conn, context, folder_id, Permission.CREATE)

        await self._once(("folder", context.subject, context.admin, folder_id), check)

    async def source(self, context: RequestContext, image_id: str) -> None:
        async def check() -> None:
            wanted = (Permission.USE, Permission.GET)
            source = await authorization.image(self._conn, context, image_id, *wanted)
            if source.status is not ImageStatus.READY:
                raise FailedPrecondition(
                    f"source image {image_id} is {source.status.value}, not READY"
                )

        await self._once(("source", context.subject, context.admin, image_id), check)

    async def _once(self, key: Hashable, check: Callable[[], Awaitable[None]]) -> None:
        if key not in self._seen:
            try:
                await check()
                self._seen[key] = None
            except ApiError as exc:
                self._seen[key] = exc
        if (error := self._seen[key]) is not None:
            raise error
