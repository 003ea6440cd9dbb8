"""PostgreSQL driver on an asyncpg pool."""

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from store.db import Contention, Row, StoreUnavailable, UniqueViolation

_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str) -> str:
    """`?` placeholders → `$1, $2, …` (our queries never hold a literal `?`)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


@contextmanager
def _translated() -> Iterator[None]:
    """asyncpg's errors that callers act on, as the store's own."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise UniqueViolation(exc.constraint_name or "") from exc
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
        raise Contention(str(exc)) from exc


class PostgresConnection:
    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        with _translated():
            status = await self._conn.execute(numbered(sql), *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if len(rows) == 1:  # asyncpg's executemany costs more than execute for one row
            await self.execute(sql, *rows[0])
            return
        with _translated():
            await self._conn.executemany(numbered(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _translated():
            return list(await self._conn.fetch(numbered(sql), *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


class _Connection(asyncpg.Connection):
    """Released to the pool without asyncpg's reset query (a round trip per transaction):
    every transaction ends before release (reads run outside any), advisory locks are
    transaction-scoped, and nothing sets session state, LISTENs or keeps cursors."""

    def get_reset_query(self) -> str:
        return ""


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 2, max_size: int = 20) -> "PostgresDatabase":
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, connection_class=_Connection
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(pool)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[PostgresConnection]:
        async with self._connection() as conn:
            yield PostgresConnection(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConnection]:
        async with self._connection() as conn, conn.transaction():
            yield PostgresConnection(conn)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; a database that cannot be reached raises StoreUnavailable."""
        try:
            conn = await self._pool.acquire()
        except (OSError, asyncpg.PostgresConnectionError) as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc
        try:
            yield conn
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"PostgreSQL connection lost: {exc}") from exc
        finally:
            await self._pool.release(conn)

    async def close(self) -> None:
        await self._pool.close()
