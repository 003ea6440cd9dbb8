"""Migrations, transactions and shared secrets, on every backend."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from contracts.enums import ImageStatus
from contracts.operations import CreateImageMetadata
from contracts.outbox_message import OutboxMessage
from store import (
    Database,
    UniqueViolation,
    bindings,
    images,
    open_database,
    operations,
    outbox_table,
    secrets_table,
)
from store.images import ImageRecord
from store.operations import OperationRecord
from store.schema import MIGRATIONS, migrate

LATEST = MIGRATIONS[-1][0]
OpenUnmigrated = Callable[[str], Awaitable[Database]]


async def versions(db: Database) -> list[int]:
    async with db.transaction() as conn:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [row["version"] for row in rows]


def migrated(logs: list[dict[str, Any]]) -> list[int]:
    return [entry["version"] for entry in logs if entry["event"] == "schema migrated"]


def image(image_id: str, name: str = "") -> ImageRecord:
    return ImageRecord(
        id=image_id, folder_id="fld1", name=name, status=ImageStatus.CREATING, created_at=1
    )


async def test_open_records_the_schema_version(db: Database) -> None:
    assert await versions(db) == [version for version, _ in MIGRATIONS]
    assert await migrate(db) == LATEST


async def test_second_open_is_a_no_op_and_keeps_data(empty_url: str) -> None:
    with capture_logs() as first_logs:
        first = await open_database(empty_url)
    try:
        async with first.transaction() as conn:
            await images.insert(conn, image("img1", "kept"))
            before = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
    finally:
        await first.close()

    with capture_logs() as second_logs:
        second = await open_database(empty_url)
    try:
        async with second.transaction() as conn:
            after = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
            kept = await images.get(conn, "img1")
    finally:
        await second.close()

    assert migrated(first_logs) == [version for version, _ in MIGRATIONS]
    assert migrated(second_logs) == []
    assert [dict(row) for row in after] == [dict(row) for row in before]
    assert kept is not None and kept.name == "kept"


async def test_concurrent_migrations_both_succeed(
    empty_url: str, open_unmigrated: OpenUnmigrated
) -> None:
    """Processes starting together: one migrates, the others wait and find nothing to do
    (on PostgreSQL thanks to the advisory lock, on SQLite to BEGIN IMMEDIATE)."""
    first, second = await open_unmigrated(empty_url), await open_unmigrated(empty_url)
    try:
        with capture_logs() as logs:
            results = await asyncio.gather(migrate(first), migrate(second), migrate(first))
        assert results == [LATEST, LATEST, LATEST]
        assert migrated(logs) == [version for version, _ in MIGRATIONS]
        assert await versions(second) == [version for version, _ in MIGRATIONS]
    finally:
        await first.close()
        await second.close()


async def test_a_transaction_that_raises_writes_nothing(db: Database) -> None:
    class Boom(Exception):
        pass

    operation = OperationRecord(
        id="opr1",
        resource_id="img1",
        kind=operations.CREATE,
        description="Create image",
        created_by="user1",
        created_at=1,
        modified_at=1,
        metadata=CreateImageMetadata(image_id="img1"),
    )
    message = OutboxMessage(exchange="kiln.events", routing_key="rk", message_id="m1", body=b"{}")
    with pytest.raises(Boom):
        async with db.transaction() as conn:
            await images.insert(conn, image("img1"))
            await operations.insert(conn, operation)
            await outbox_table.add(conn, message, now=1)
            await bindings.add(conn, "img1", ("viewer", "userAccount", "user1"))
            raise Boom

    async with db.transaction() as conn:
        assert await images.get(conn, "img1") is None
        assert await operations.get(conn, "opr1") is None
        assert await outbox_table.backlog(conn) == 0
        assert await bindings.all_for(conn, "img1") == set()


async def test_a_unique_violation_rolls_back_the_whole_transaction(db: Database) -> None:
    async with db.transaction() as conn:
        await images.insert(conn, image("img1", "taken"))

    with pytest.raises(UniqueViolation):
        async with db.transaction() as conn:
            await images.insert(conn, image("img2"))
            await images.insert(conn, image("img3", "taken"))

    async with db.transaction() as conn:
        assert await images.get(conn, "img2") is None
        assert await images.get(conn, "img3") is None
        await images.insert(conn, image("img4"))  # the database is still usable
        assert await images.get(conn, "img4") is not None


async def test_secret_is_created_once_and_shared(db: Database, database_url: str) -> None:
    first = await secrets_table.get_or_create(db, "jwt")
    together = await asyncio.gather(*(secrets_table.get_or_create(db, "jwt") for _ in range(5)))
    other = await secrets_table.get_or_create(db, "cursor")

    reopened = await open_database(database_url)
    try:
        later = await secrets_table.get_or_create(reopened, "jwt")
    finally:
        await reopened.close()

    assert len(first) == 64 and int(first, 16) >= 0
    assert together == [first] * 5
    assert later == first
    assert other != first
