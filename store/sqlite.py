"""SQLite driver (the embedded default) on aiosqlite: one connection, one writer at a time."""

import asyncio
import contextlib
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import aiosqlite

from store.db import Row, UniqueViolation


class SqliteConnection:
    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            cursor = await self._conn.execute(sql, args)
        except sqlite3.IntegrityError as exc:
            raise _unique_violation(exc) from exc
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise _unique_violation(exc) from exc

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        # One hop to SQLite's thread for both: a task cancelled between an UPDATE … RETURNING
        # and its fetch left the statement running, and the transaction could not commit.
        try:
            rows = await self._conn.execute_fetchall(sql, args)
        except sqlite3.IntegrityError as exc:
            raise _unique_violation(exc) from exc
        return cast(list[Row], list(rows))  # sqlite3.Row reads by column name, as a Mapping

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


def _owner_only(path: Path) -> None:
    """Create the database file with mode 0600 and take the group's and others' bits off it
    and its -wal and -shm files, however they were left: it holds the page-token key and
    source URIs that may be pre-signed. SQLite gives the -wal and -shm files it creates the
    database file's mode, so they follow."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    for name in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(name.stat().st_mode)
            if mode & 0o077:
                os.chmod(name, mode & 0o700)


def _unique_violation(exc: sqlite3.IntegrityError) -> Exception:
    text = str(exc)
    if "UNIQUE" not in text:
        return exc
    return UniqueViolation(text.partition(": ")[2])


class SqliteDatabase:
    """Transactions are serialized by a lock: SQLite has one writer, and this keeps reads
    inside a transaction consistent without retry loops on SQLITE_BUSY."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> "SqliteDatabase":
        _owner_only(Path(path))
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            await conn.execute(f"PRAGMA {pragma}")
        return cls(conn)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[SqliteConnection]:
        """Under the lock too: the one connection must not run a read inside another's
        transaction, where it would see what that one has not committed."""
        async with self._lock:
            yield SqliteConnection(self._conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteConnection]:
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield SqliteConnection(self._conn)
            except BaseException:
                # Also when cancelled while BEGIN was queued: aiosqlite runs statements in
                # order on its thread whatever becomes of their caller, so a ROLLBACK queued
                # now undoes that BEGIN before the next transaction's.
                await asyncio.shield(self._rollback())
                raise
            await self._conn.execute("COMMIT")

    async def _rollback(self) -> None:
        try:
            await self._conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # no transaction was open: BEGIN itself failed

    async def close(self) -> None:
        await self._conn.close()
