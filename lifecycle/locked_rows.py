"""The rows a batch of changes works on: locked at once, kept current in memory while the
transitions decide one change after another (so two changes of one image or one operation
see each other), then written with one statement per table, whatever the batch's size."""

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

import msgspec

from contracts.enums import ImageStatus
from contracts.notices import cancel_notice
from contracts.operations import OperationResponse, Status
from contracts.outbox_message import OutboxMessage
from lifecycle.changes import AcceptDelete, Change, ImportDone, Lease, ReleaseImage, StartImport
from runtime.clock import now_us
from store import bindings, image_events, images, operations
from store.db import Connection
from store.images import ImageRecord
from store.operations import OperationRecord


class Finished(NamedTuple):
    """An operation a transition ended: its id, its kind, and its error's code and message
    (code None: it succeeded)."""

    operation_id: str
    kind: str
    code: int | None
    message: str = ""


class LockedRows:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.now = now_us()
        self._images: dict[str, ImageRecord] = {}
        self._operations: dict[str, OperationRecord] = {}
        self._claims: dict[str, OperationRecord] = {}  # leases taken, not yet handed out
        self._open_creates: dict[str, list[str]] = {}  # of the images a delete removes
        self._replaced: dict[str, ImageRecord] = {}
        self._removed: dict[str, ImageRecord] = {}
        self._inserted: list[OperationRecord] = []
        self._cancels: list[str] = []  # operations asked to stop
        self._finished: list[tuple[str, OperationResponse | None, Status | None]] = []
        self._sent: list[OutboxMessage] = []  # outbox rows that are not events
        self._numbered: list[tuple[ImageRecord, list[OutboxMessage]]] = []
        self._written: dict[str, OutboxMessage] = {}  # by message id, as the outbox numbered them

    async def lock(
        self, changes: Sequence[Change], locked: Mapping[str, ImageRecord] = MappingProxyType({})
    ) -> None:
        """Every image first, copies' sources included, in id order (the order the gateway
        locks several images in), but those the caller's transaction `locked` and read
        already; then the operations: leases taken, the others locked. The open creates of an
        image being deleted are read unlocked: every writer of an operation's end holds its
        image's lock, which this batch holds."""
        image_ids = {change.image_id for change in changes} | _sources(changes)
        self._images = dict(locked)
        self._images |= await images.get_locked(self._conn, sorted(image_ids - locked.keys()))
        stored = {c.operation_id for c in changes if not isinstance(c, StartImport | AcceptDelete)}
        self._operations = await operations.get_locked(self._conn, sorted(stored))
        leases = [change.lease for change in changes if isinstance(change, StartImport)]
        self._claims = await take_leases(self._conn, leases)
        self._operations |= self._claims
        deleted = [
            c.image_id
            for c in changes
            if isinstance(c, AcceptDelete | ReleaseImage) and self._may_create(c.image_id)
        ]
        for op in await operations.open_of_kind(self._conn, deleted, operations.CREATE):
            self._open_creates.setdefault(op.resource_id, []).append(op.id)
            self._operations.setdefault(op.id, op)

    def _may_create(self, image_id: str) -> bool:
        """Whether the image may have an open create (a READY or ERROR one has none)."""
        image = self._images.get(image_id)
        return image is not None and image.status in (ImageStatus.CREATING, ImageStatus.DELETING)

    def image(self, image_id: str) -> ImageRecord | None:
        return self._images.get(image_id)

    def operation(self, operation_id: str) -> OperationRecord | None:
        return self._operations.get(operation_id)

    def claim(self, operation_id: str) -> OperationRecord | None:
        """The operation as it stands now, if this batch leased it, no earlier change was
        handed it, and no earlier change ended it (its lease goes with the end)."""
        if self._claims.pop(operation_id, None) is None:
            return None
        op = self._operations[operation_id]
        return None if op.done else op

    def open_creates(self, image_id: str) -> list[OperationRecord]:
        """The image's creates not yet done (of an image a change of the batch deletes)."""
        ids = self._open_creates.get(image_id, [])
        return [op for op in map(self._operations.__getitem__, ids) if not op.done]

    def insert(self, op: OperationRecord) -> None:
        self._operations[op.id] = op
        self._inserted.append(op)

    def ask_to_stop(self, op: OperationRecord, request_id: str) -> list[OutboxMessage]:
        """Ask the operation to stop; a notice, if a worker may be running it."""
        self._operations[op.id] = msgspec.structs.replace(
            op, cancel_requested=True, modified_at=self.now
        )
        self._cancels.append(op.id)
        if op.lease_owner is None:
            return []
        return [self.send(cancel_notice(op.id, request_id))]

    def send(self, message: OutboxMessage) -> OutboxMessage:
        """Queue an outbox row that is not an event (a command, a notice)."""
        self._sent.append(message)
        return message

    def replace(self, image: ImageRecord) -> None:
        self._images[image.id] = self._replaced[image.id] = image

    def remove(self, image: ImageRecord) -> None:
        del self._images[image.id]
        self._replaced.pop(image.id, None)
        self._removed[image.id] = image

    def announce(
        self, image: ImageRecord, news: Sequence[image_events.Event]
    ) -> list[OutboxMessage]:
        """The image's events, numbered now in its sequence (`image` must be its current
        record)."""
        messages = image_events.number(image, news, self.now)
        self._numbered.append((image, messages))
        return list(messages)  # the caller's to extend

    def finish(
        self,
        image: ImageRecord | None,
        op: OperationRecord,
        *,
        response: OperationResponse | None = None,
        error: Status | None = None,
        announce: Sequence[image_events.Event] = (),
    ) -> tuple[list[OutboxMessage], Finished]:
        """End the operation and announce it, after the image's `announce` events (when its
        image still exists to sequence the events)."""
        done = msgspec.structs.replace(
            op, done=True, modified_at=self.now, response=response, error=error
        )
        self._operations[op.id] = done
        self._finished.append((op.id, response, error))
        news = [*announce, image_events.operation_done(done)]
        messages = self.announce(image, news) if image is not None else []
        code, reason = (error.code, error.message) if error else (None, "")
        return messages, Finished(op.id, op.kind, code, reason)

    def still_stored(self, image_id: str, digest: str) -> bool:
        """Whether a copy's source still holds its bytes (locked, so a delete waits for us)."""
        source = self._images.get(image_id)
        return source is not None and source.blob_digest == digest

    async def write(self) -> None:
        """Write what the transitions decided: one statement per table."""
        conn = self._conn
        if self._replaced:
            await images.replace_many(conn, list(self._replaced.values()))
        if self._inserted:
            await operations.insert_many(conn, self._inserted)
        if self._cancels:
            await operations.request_cancel(conn, self._cancels, self.now)
        if self._finished:
            await operations.finish(conn, self._finished, self.now)
        sequenced = {image.id for image, _ in self._numbered} - self._removed.keys()
        await images.store_event_seqs(conn, [self._images[i] for i in sorted(sequenced)])
        if self._numbered or self._sent:
            written = await image_events.write(conn, self._numbered, self.now, self._sent)
            self._written = {message.message_id: message for message in written}
        if self._removed:
            await images.delete_locked(conn, sorted(self._removed))
            await bindings.remove_all(conn, sorted(self._removed))

    def as_written(self, messages: list[OutboxMessage]) -> list[OutboxMessage]:
        """The messages as written to the outbox (numbered, so that the publisher can mark
        them sent)."""
        return [self._written[message.message_id] for message in messages]


async def take_leases(conn: Connection, leases: Sequence[Lease]) -> dict[str, OperationRecord]:
    """Take the leases from the moment this runs (not when they were asked for: they may have
    waited for a batch); the operations claimed, by id."""
    now = now_us()
    by_holder: dict[tuple[str, int], list[str]] = {}
    for lease in leases:
        by_holder.setdefault((lease.owner, lease.length_us), []).append(lease.operation_id)
    claimed: dict[str, OperationRecord] = {}
    for (owner, length_us), operation_ids in by_holder.items():
        claimed |= await operations.take_leases(conn, operation_ids, owner, now, now + length_us)
    return claimed


def _sources(changes: Sequence[Change]) -> set[str]:
    """The images that the batch's copies were made from, whose bytes they check."""
    dones = (change for change in changes if isinstance(change, ImportDone))
    return {done.result.copied_from for done in dones if done.result.copied_from}
