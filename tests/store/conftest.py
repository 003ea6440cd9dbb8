"""Fixtures that run every store behaviour test on SQLite and on PostgreSQL.

SQLite gets a new file per test. PostgreSQL gets one database `kiln_test_<hex>` per test module
(creating one costs ~0.2 s), emptied before each test and dropped after the module; tests of
migrations get a brand-new empty database of their own. When PostgreSQL on 127.0.0.1:5432
cannot be reached those tests fail, they are never skipped.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from store import Database, open_database
from store.postgres import PostgresDatabase
from store.sqlite import SqliteDatabase

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
CONNECT_TIMEOUT = 5.0  # seconds: an unreachable server fails the test quickly
OpenUnmigrated = Callable[[str], Awaitable[Database]]


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is required at {PG_SERVER} and cannot be reached: {exc!r}")


async def _create_pg_database() -> str:
    name = f"kiln_test_{uuid.uuid4().hex}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def _drop_pg_database(name: str) -> None:
    admin = await _admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def temporary_pg_database() -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped (even if still in use) on exit."""
    name = await _create_pg_database()
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        await _drop_pg_database(name)


@pytest.fixture(scope="module")
def pg_module_database() -> Iterator[str]:
    """One PostgreSQL database for a test module (sync: each test has its own event loop)."""
    name = asyncio.run(_create_pg_database())
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        asyncio.run(_drop_pg_database(name))


async def _delete_all_rows(database: Database) -> None:
    """Empty every table but the schema version: each test starts from a migrated, empty store."""
    async with database.transaction() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"
        )
        names = ", ".join(row["tablename"] for row in tables)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's database of the backend, by URL (PostgreSQL: the module's database)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'kiln.db'}"
    else:
        yield request.getfixturevalue("pg_module_database")


@pytest.fixture
async def empty_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database of the backend that no one has migrated yet, by URL."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    async with temporary_pg_database() as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The database at `database_url`, migrated and empty, open for the test."""
    database = await open_database(database_url)
    try:
        if database.dialect == "postgresql":
            await _delete_all_rows(database)
        yield database
    finally:
        await database.close()


async def _open_unmigrated(url: str) -> Database:
    if url.startswith("sqlite:///"):
        return await SqliteDatabase.open(Path(url.removeprefix("sqlite:///")))
    return await PostgresDatabase.open(url)


@pytest.fixture
def open_unmigrated() -> OpenUnmigrated:
    """Opens a handle on a URL without migrating it, as a process does before `migrate()`."""
    return _open_unmigrated
