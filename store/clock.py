"""Times are stored as integer microseconds since the epoch (UTC) on both backends, read from
the database's clock.

Gateways and workers on several hosts compare each other's timestamps (leases and their
expiry, outbox ages, retention), so they must not each trust their own clock: every process
keeps the offset of its clock from the database's, measured when it opens the store and again
every `SYNC_SECONDS` (`keep_in_step`), and `now_us` adds it. A worker whose clock runs minutes
fast or slow then takes, renews and judges leases on the same time line as every other."""

import asyncio
import datetime as dt
import time

import structlog

from store.db import Database

log = structlog.get_logger(__name__)

SYNC_SECONDS = 30.0
WARNING_US = 5_000_000
_DATABASE_NOW = {
    "postgresql": "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now",
    "sqlite": "SELECT CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) AS now",
}
_offset_us = 0


def now_us() -> int:
    """The database's time now, in microseconds since the epoch."""
    return _local_us() + _offset_us


def to_datetime(micros: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(micros / 1_000_000, tz=dt.timezone.utc)


async def sync(db: Database) -> int:
    """Measure this process's clock against the database's; the offset now applied (µs).
    SQLite is a file of this host: its clock is this process's, and the measure only noise."""
    global _offset_us
    if db.dialect == "sqlite":
        return _offset_us
    before = _local_us()
    async with db.reading() as conn:
        row = await conn.fetchrow(_DATABASE_NOW[db.dialect])
    after = _local_us()
    assert row is not None
    # The database read its clock somewhere within the round trip: its middle, at best.
    _offset_us = int(row["now"]) - (before + after) // 2
    return _offset_us


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


def _local_us() -> int:
    return time.time_ns() // 1000
