"""Keeping this process's clock (runtime/clock.py) in step with the database's: the offset is
measured when the store is opened and again every `SYNC_SECONDS` (`keep_in_step`)."""

import asyncio

import structlog

from runtime import clock
from store.db import Database

log = structlog.get_logger(__name__)

SYNC_SECONDS = 30.0
WARNING_US = 5_000_000
_DATABASE_NOW = {
    "postgresql": "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now",
    "sqlite": "SELECT CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) AS now",
}


async def sync(db: Database) -> int:
    """Measure this process's clock against the database's; the offset now applied (µs).
    SQLite is a file of this host: its clock is this process's, and the measure only noise."""
    if db.dialect == "sqlite":
        return clock.offset_us()
    before = clock.local_us()
    async with db.reading() as conn:
        row = await conn.fetchrow(_DATABASE_NOW[db.dialect])
    after = clock.local_us()
    assert row is not None
    # The database read its clock somewhere within the round trip: its middle, at best.
    offset = int(row["now"]) - (before + after) // 2
    clock.set_offset_us(offset)
    return offset


async def keep_in_step(db: Database, every: float = SYNC_SECONDS) -> None:
    """Run `sync` every `every` seconds, for ever; a failed one keeps the last offset."""
    while True:
        await asyncio.sleep(every)
        try:
            offset = await sync(db)
        except Exception as exc:
            log.warning("clock.sync_failed", error=repr(exc))
        else:
            warn_if_off(offset)


def warn_if_off(offset_us: int) -> None:
    """Say so when this host's clock is far from the database's (Kiln uses the latter)."""
    if abs(offset_us) > WARNING_US:
        log.warning("clock.offset", offset_seconds=offset_us / 1_000_000)
