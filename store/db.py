"""The database port: two drivers (SQLite, PostgreSQL) behind one small interface.

Queries are written once with `?` placeholders; the PostgreSQL driver numbers them.
"""

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Mapping[str, Any]


class StoreError(Exception):
    """Root of the store's exceptions."""


class UniqueViolation(StoreError):
    """An insert or update broke a unique index; `constraint` names it where the driver can."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


class Contention(StoreError):
    """The transaction was aborted for colliding with another (a deadlock); retrying it alone
    succeeds."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now (transient)."""


class StoreMisconfigured(StoreError):
    """The database URL cannot work: malformed, or naming a database or credentials the server
    refuses. Trying again does not help."""


class Connection(Protocol):
    dialect: str

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of arguments, in one round trip where the driver can."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...


class Database(Protocol):
    dialect: str

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A connection inside one transaction: committed on exit, rolled back on error."""

    def reading(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for reads only, outside any transaction: each statement sees what was
        committed when it began (as in a transaction at PostgreSQL's READ COMMITTED, the one
        Kiln's transactions run at), without the round trips of BEGIN and COMMIT."""

    async def close(self) -> None: ...


async def fetch_locked(conn: Connection, table: str, columns: str, ids: Sequence[str]) -> list[Row]:
    """The rows of `table` among `ids`, locked until commit in id order (so that two
    transactions locking overlapping sets cannot deadlock); none for no ids (`IN ()` is no
    SQL to PostgreSQL)."""
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    suffix = " FOR UPDATE" if conn.dialect == "postgresql" else ""
    return await conn.fetch(
        f"SELECT {columns} FROM {table} WHERE id IN ({marks}) ORDER BY id{suffix}", *ids
    )


async def lock_until_commit(conn: Connection, key: int) -> None:
    """Make every transaction that takes the lock `key` wait for this one to end (an
    advisory lock on PostgreSQL; SQLite runs one writing transaction at a time anyway)."""
    if conn.dialect == "postgresql":
        await conn.execute("SELECT pg_advisory_xact_lock(?)", key)


async def lock_names_until_commit(conn: Connection, names: Collection[str]) -> None:
    """`lock_until_commit` for every one of `names` (PostgreSQL hashes each to its key), in
    one statement and in name order (the rows of `unnest` come in array order), so that two
    transactions locking overlapping sets cannot wait for each other."""
    if conn.dialect == "postgresql" and names:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(n, 0)) FROM unnest(?::text[]) AS n",
            sorted(names),
        )
