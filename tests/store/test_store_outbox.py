"""The outbox, and image events queued in it."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from contracts.enums import ImageStatus
from contracts.events import CONTENT_TYPE, event_decoder
from contracts.names import EVENTS_EXCHANGE
from contracts.outbox_message import OutboxMessage
from store import Connection, Database, image_events, images, outbox_table
from store.images import ImageRecord

T0 = 1_700_000_000_000_000
FAR_FUTURE = 2**62


def message(number: int, body: bytes = b'{"imageId": "img1"}') -> OutboxMessage:
    return OutboxMessage(
        exchange="kiln.commands",
        routing_key="kiln.image.create",
        message_id=f"msg{number}",
        body=body,
        type="kiln.image.create",
        correlation_id=f"opr{number}",
    )


async def unsent(db: Database, created_before: int = FAR_FUTURE, limit: int = 1000) -> list[str]:
    async with db.transaction() as conn:
        return [sent.message_id for sent in await outbox_table.unsent(conn, created_before, limit)]


async def test_add_assigns_increasing_seq_and_keeps_the_message(db: Database) -> None:
    binary = bytes(range(256))
    async with db.transaction() as conn:
        added = [await outbox_table.add(conn, message(n), T0 + n) for n in range(3)]
        added.append(await outbox_table.add(conn, message(3, binary), T0 + 3))
    async with db.transaction() as conn:
        added.append(await outbox_table.add(conn, message(4), T0 + 4))
        stored = await outbox_table.unsent(conn, FAR_FUTURE, 10)

    seqs = [sent.seq for sent in added]
    assert seqs == sorted(set(seqs)) and seqs[0] > 0
    assert [sent.message_id for sent in added] == [f"msg{n}" for n in range(5)]
    assert added[3].body == binary
    assert stored == added


async def test_unsent_respects_created_before_order_and_limit(db: Database) -> None:
    async with db.transaction() as conn:
        for number, created_at in enumerate([T0 + 30, T0 + 10, T0 + 20, T0 + 40]):
            await outbox_table.add(conn, message(number), created_at)

    assert await unsent(db, T0 + 31) == ["msg0", "msg1", "msg2"]  # seq order, not age
    assert await unsent(db, T0 + 30) == ["msg1", "msg2"]
    assert await unsent(db, T0 + 31, limit=2) == ["msg0", "msg1"]
    assert await unsent(db, T0) == []


async def test_mark_sent_and_backlog(db: Database) -> None:
    async with db.transaction() as conn:
        added = [await outbox_table.add(conn, message(n), T0) for n in range(4)]
        assert await outbox_table.backlog(conn) == 4

    async with db.transaction() as conn:
        await outbox_table.mark_sent(conn, [added[0].seq, added[2].seq], T0 + 1)
        await outbox_table.mark_sent(conn, [], T0 + 1)
        assert await outbox_table.backlog(conn) == 2

    assert await unsent(db) == ["msg1", "msg3"]


async def test_prune_sent_drops_only_rows_sent_before_the_retention(db: Database) -> None:
    async with db.transaction() as conn:
        added = [await outbox_table.add(conn, message(n), T0) for n in range(3)]
        await outbox_table.mark_sent(conn, [added[0].seq], T0)
        await outbox_table.mark_sent(conn, [added[1].seq], T0 + outbox_table.SENT_RETENTION_US)

    async with db.transaction() as conn:
        assert await outbox_table.prune_sent(conn, T0 + outbox_table.SENT_RETENTION_US + 1) == 1
        rows = await conn.fetch("SELECT message_id FROM outbox ORDER BY seq")

    assert [row["message_id"] for row in rows] == ["msg1", "msg2"]  # msg2 unsent, kept


async def test_mark_sent_in_chunks(db: Database) -> None:
    async with db.transaction() as conn:
        seqs = [(await outbox_table.add(conn, message(n, b"{}"), T0)).seq for n in range(1201)]
        await outbox_table.mark_sent(conn, seqs[:-1], T0 + 1)
        assert await outbox_table.backlog(conn) == 1

    assert await unsent(db) == ["msg1200"]


def image(image_id: str = "img1", folder_id: str = "fld1") -> ImageRecord:
    return ImageRecord(
        id=image_id,
        folder_id=folder_id,
        name=f"ubuntu-{image_id}",
        status=ImageStatus.CREATING,
        created_at=T0,
    )


async def _record(
    conn: Connection, record: ImageRecord, name: str, operation_id: str, data: object = None
) -> list[OutboxMessage]:
    return await image_events.record(conn, [(record, [(name, operation_id, data)])])


async def test_record_numbers_the_event_and_queues_it(db: Database) -> None:
    record = image()
    async with db.transaction() as conn:
        await images.insert(conn, record)
        await images.insert(conn, image("img2"))
        (first,) = await _record(conn, record, "created", "opr1", {"imageId": "img1"})
        (second,) = await _record(conn, record, "updated", "opr2")

    async with db.transaction() as conn:
        stored = await images.get(conn, "img1")
        other = await images.get(conn, "img2")
        queued = await outbox_table.unsent(conn, FAR_FUTURE, 10)

    assert stored is not None and stored.event_seq == 2 == record.event_seq
    assert other is not None and other.event_seq == 0
    assert queued == [first, second] and first.seq < second.seq
    assert first.exchange == EVENTS_EXCHANGE
    assert first.routing_key == "compute.image.created.fld1"
    assert second.routing_key == "compute.image.updated.fld1"
    assert (first.message_id, second.message_id) == ("img1-1", "img1-2")
    assert (first.content_type, first.type) == (CONTENT_TYPE, "compute.image.created")
    assert (first.correlation_id, second.correlation_id) == ("opr1", "opr2")

    event = event_decoder.decode(first.body)
    assert (event.id, event.type, event.subject) == ("img1-1", "compute.image.created", "img1")
    assert (event.sequence, event.correlationid, event.folderid) == ("1", "opr1", "fld1")
    assert event.specversion == "1.0" and event.time.tzinfo is not None
    assert event.data == {"imageId": "img1"}
    later = event_decoder.decode(second.body)
    assert (later.id, later.sequence, later.correlationid, later.data) == (
        "img1-2",
        "2",
        "opr2",
        None,
    )


async def test_record_continues_from_the_stored_sequence(db: Database) -> None:
    async with db.transaction() as conn:
        await images.insert(conn, image())
        await _record(conn, image(), "created", "opr1")

    async with db.transaction() as conn:
        fresh = (await images.get_locked(conn, ["img1"]))["img1"]
        (queued,) = await _record(conn, fresh, "updated", "opr2")

    assert queued.message_id == "img1-2"
    assert event_decoder.decode(queued.body).sequence == "2"


async def test_record_is_rolled_back_with_its_transaction(db: Database) -> None:
    async with db.transaction() as conn:
        await images.insert(conn, image())

    try:
        async with db.transaction() as conn:
            await _record(conn, image(), "created", "opr1")
            raise LookupError
    except LookupError:
        pass

    async with db.transaction() as conn:
        stored = await images.get(conn, "img1")
        assert stored is not None and stored.event_seq == 0
        assert await outbox_table.backlog(conn) == 0


class GatedDatabase:
    """A database whose transactions wait at a gate, to hold a flush half-way."""

    def __init__(self, db: Database) -> None:
        self.db, self.dialect = db, db.dialect
        self.entered, self.gate = asyncio.Event(), asyncio.Event()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        self.entered.set()
        await self.gate.wait()
        async with self.db.transaction() as conn:
            yield conn


async def test_sent_marker_marks_rows_handed_over_during_a_flush(db: Database) -> None:
    async with db.transaction() as conn:
        added = [await outbox_table.add(conn, message(n), T0) for n in range(3)]
    gated = GatedDatabase(db)
    marker = outbox_table.SentMarker(gated, every=0.001)  # type: ignore[arg-type]
    marker.mark([added[0].seq])
    await gated.entered.wait()  # its flush has taken the first row and waits
    marker.mark([added[1].seq, added[2].seq])
    gated.gate.set()
    async with asyncio.timeout(5):
        while await unsent(db):
            await asyncio.sleep(0.01)  # the marker's own background flushes
    await marker.close()


async def test_a_transaction_cancelled_at_begin_leaves_none_open(db: Database) -> None:
    async def write() -> None:
        async with db.transaction() as conn:
            await outbox_table.add(conn, message(1), T0)

    task = asyncio.create_task(write())
    await asyncio.sleep(0)  # the task has sent BEGIN and waits for it
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    async with db.transaction() as conn:
        assert await outbox_table.backlog(conn) in (0, 1)  # whether or not the write got through
