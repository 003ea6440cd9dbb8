"""Persistence: schema, migrations and queries over SQLite or PostgreSQL."""

from pathlib import Path

from store import clock_sync
from store.db import (
    Connection,
    Database,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
    UniqueViolation,
)
from store.schema import migrate

__all__ = [
    "Connection",
    "Database",
    "StoreError",
    "StoreMisconfigured",
    "StoreUnavailable",
    "UniqueViolation",
    "open_database",
]


async def open_database(url: str) -> Database:
    """Open `sqlite:///path` or `postgresql://…`, and bring its schema up to date."""
    db: Database
    if url.startswith("sqlite:///"):
        from store.sqlite import SqliteDatabase

        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = await SqliteDatabase.open(path)
    elif url.startswith(("postgresql://", "postgres://")):
        from store.postgres import PostgresDatabase

        db = await PostgresDatabase.open(url)
    else:
        raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")
    try:
        await migrate(db)
        offset = await clock_sync.sync(db)
    except BaseException:  # the server went away meanwhile, or start-up was cut short
        await db.close()
        raise
    clock_sync.warn_if_off(offset)
    return db
