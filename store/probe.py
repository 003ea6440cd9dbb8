"""Whether the database answers now: the store's part of a readiness check."""

import asyncio

import structlog

from store.db import Database

log = structlog.get_logger(__name__)


async def reachable(db: Database, timeout: float = 2.0) -> bool:
    """True when `SELECT 1` comes back within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            async with db.transaction() as conn:
                await conn.fetchrow("SELECT 1 AS one")
    except Exception as exc:
        log.warning("store.unreachable", error=repr(exc))
        return False
    return True
