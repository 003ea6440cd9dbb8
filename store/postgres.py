"""PostgreSQL driver on an asyncpg pool."""

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from store.db import Contention, Row, StoreMisconfigured, StoreUnavailable, UniqueViolation

_PLACEHOLDER = re.compile(r"\?")

# PostgreSQL cannot serve now, for the reason given; the first match names it.
_NOT_NOW: tuple[tuple[type[Exception], str], ...] = (
    (asyncpg.CannotConnectNowError, "it is starting up or shutting down"),
    (asyncpg.AdminShutdownError, "an administrator terminated the session"),
    (asyncpg.OperatorInterventionError, "an operator or a crash interrupted the session"),
    (asyncpg.TooManyConnectionsError, "it has too many connections"),
    (asyncpg.InsufficientResourcesError, "it lacks the resources (disk, memory)"),
    (asyncpg.ReadOnlySQLTransactionError, "it is read-only (a standby, or a demoted primary)"),
    (asyncpg.TargetServerAttributeNotMatched, "no host is the kind of server the URL asks for"),
    (asyncpg.ConnectionDoesNotExistError, "the connection was lost"),
    (asyncpg.PostgresConnectionError, "the connection failed"),
    (asyncpg.InterfaceError, "the connection was lost"),
    # A session the server ended, in the moment between its last message and the socket
    # closing: asyncpg refuses statements on it ("cannot switch to state …").
    (asyncpg.InternalClientError, "the connection is ending"),
    (TimeoutError, "it did not answer in time"),
    (ConnectionRefusedError, "connection refused"),
    (OSError, "it cannot be reached"),
)
_NOT_NOW_TYPES = tuple(kind for kind, _ in _NOT_NOW)


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


def _unavailable(exc: Exception) -> StoreUnavailable:
    """The StoreUnavailable for one of the _NOT_NOW errors, naming PostgreSQL and the reason."""
    reason = next(why for kind, why in _NOT_NOW if isinstance(exc, kind))
    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return StoreUnavailable(f"PostgreSQL unavailable: {reason} ({error})")


@contextmanager
def _not_now() -> Iterator[None]:
    try:
        yield
    except _NOT_NOW_TYPES as exc:
        raise _unavailable(exc) from exc


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
        """A pool on `dsn`; StoreUnavailable while PostgreSQL cannot serve, StoreMisconfigured
        when `dsn` cannot work (malformed, an unknown database, credentials refused)."""
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, connection_class=_Connection
            )
        except (ValueError, OverflowError) as exc:  # asyncpg's verdicts on a malformed URL
            raise StoreMisconfigured(f"malformed PostgreSQL URL: {exc}") from exc
        except _NOT_NOW_TYPES as exc:
            raise _unavailable(exc) from exc
        except asyncpg.PostgresError as exc:
            raise StoreMisconfigured(f"PostgreSQL refused the connection: {exc}") from exc
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
        """A pooled connection. PostgreSQL failing to serve, whether on acquiring, in a
        statement, on commit or on release, raises StoreUnavailable."""
        with _not_now():
            conn = await self._pool.acquire()
            try:
                yield conn
            finally:
                await self._pool.release(conn)

    async def close(self) -> None:
        await self._pool.close()
