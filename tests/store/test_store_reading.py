"""Reads outside a transaction (Database.reading): they see what was committed, never what a
transaction in progress has not, and on PostgreSQL they cost no BEGIN or COMMIT."""

import asyncio

import pytest

from contracts.enums import ImageStatus
from store import Database, images
from store.db import Connection
from store.images import ImageRecord

RECORD = ImageRecord(
    id="img0reading000000001",
    folder_id="fld1",
    status=ImageStatus.READY,
    created_at=1_700_000_000_000_000,
)


async def _read(db: Database) -> ImageRecord | None:
    async with db.reading() as conn:
        return await images.get(conn, RECORD.id)


async def test_a_read_sees_what_was_committed(db: Database) -> None:
    async with db.transaction() as conn:
        await images.insert(conn, RECORD)

    assert await _read(db) == RECORD


async def test_a_read_never_sees_what_a_transaction_has_not_committed(db: Database) -> None:
    written, commit = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        async with db.transaction() as conn:
            await images.insert(conn, RECORD)
            written.set()
            await commit.wait()

    writer = asyncio.create_task(write())
    await written.wait()
    reader = asyncio.create_task(_read(db))
    if db.dialect == "postgresql":
        assert await reader is None  # read at once, before the commit
    else:
        # One connection: the read waits for the transaction instead of reading inside it.
        await asyncio.sleep(0.1)
        assert not reader.done()
    commit.set()
    await writer
    if db.dialect == "sqlite":
        assert await reader == RECORD


async def test_a_read_on_postgresql_opens_no_transaction(db: Database) -> None:
    """Outside a transaction block each statement is a transaction of its own."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite reads run under the store's lock; there is no round trip to save")

    async def two_transaction_ids(conn: Connection) -> set[int]:
        rows = [await conn.fetchrow("SELECT txid_current() AS id") for _ in range(2)]
        return {row["id"] for row in rows if row is not None}

    async with db.reading() as conn:
        assert len(await two_transaction_ids(conn)) == 2
    async with db.transaction() as conn:
        assert len(await two_transaction_ids(conn)) == 1
