"""The outbox: messages written with their state change, published after commit."""

import asyncio
from collections.abc import Sequence

import msgspec
import structlog

from contracts.outbox_message import OutboxMessage
from runtime.clock import now_us
from store.db import Connection, Database, Row, StoreError

log = structlog.get_logger(__name__)


async def add(conn: Connection, message: OutboxMessage, now: int) -> OutboxMessage:
    (added,) = await add_many(conn, [message], now)
    return added


async def add_many(
    conn: Connection, messages: Sequence[OutboxMessage], now: int
) -> list[OutboxMessage]:
    """Queue the messages in one statement; each returned with its `seq`. Message ids are
    unique among them (an event's id, a command's operation id)."""
    if not messages:
        return []
    values = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in messages)
    rows = await conn.fetch(
        "INSERT INTO outbox (exchange, routing_key, message_id, content_type, type,"
        f" correlation_id, body, created_at) VALUES {values} RETURNING seq, message_id",
        *(
            value
            for m in messages
            for value in (
                m.exchange,
                m.routing_key,
                m.message_id,
                m.content_type,
                m.type,
                m.correlation_id,
                m.body,
                now,
            )
        ),
    )
    seqs = {row["message_id"]: int(row["seq"]) for row in rows}
    return [msgspec.structs.replace(m, seq=seqs[m.message_id]) for m in messages]


def _from_row(row: Row) -> OutboxMessage:
    return OutboxMessage(
        seq=int(row["seq"]),
        exchange=row["exchange"],
        routing_key=row["routing_key"],
        message_id=row["message_id"],
        content_type=row["content_type"],
        type=row["type"],
        correlation_id=row["correlation_id"],
        body=bytes(row["body"]),
    )


async def unsent(conn: Connection, created_before: int, limit: int) -> list[OutboxMessage]:
    """Up to `limit` unsent rows older than `created_before`, in seq order (a read)."""
    rows = await conn.fetch(
        "SELECT seq, exchange, routing_key, message_id, content_type, type, correlation_id, body"
        " FROM outbox WHERE sent_at IS NULL AND created_at < ? ORDER BY seq LIMIT ?",
        created_before,
        limit,
    )
    return [_from_row(row) for row in rows]


async def claim_unsent(
    conn: Connection, created_before: int, now: int, until: int, limit: int
) -> list[OutboxMessage]:
    """Up to `limit` unsent rows older than `created_before` that no other relay holds, held
    by this one until `until` (rows being claimed by another transaction are skipped, not
    waited for); in seq order."""
    skip_locked = " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgresql" else ""
    rows = await conn.fetch(
        "UPDATE outbox SET relay_until = ? WHERE seq IN (SELECT seq FROM outbox"
        " WHERE sent_at IS NULL AND created_at < ? AND relay_until < ? ORDER BY seq LIMIT ?"
        f"{skip_locked}) RETURNING seq, exchange, routing_key, message_id, content_type, type,"
        " correlation_id, body",
        until,
        created_before,
        now,
        limit,
    )
    return sorted(map(_from_row, rows), key=lambda message: message.seq)


async def mark_sent(conn: Connection, seqs: Sequence[int], now: int) -> None:
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        await conn.execute(f"UPDATE outbox SET sent_at = ? WHERE seq IN ({marks})", now, *chunk)


# Sent rows are kept a while for inspection, then dropped.
SENT_RETENTION_US = 3600 * 1_000_000


async def prune_sent(conn: Connection, now: int) -> int:
    """Delete rows sent more than SENT_RETENTION_US ago; how many."""
    return await conn.execute(
        "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", now - SENT_RETENTION_US
    )


async def backlog(conn: Connection) -> int:
    row = await conn.fetchrow("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL")
    return int(row["n"]) if row else 0


async def oldest_unsent(conn: Connection) -> int | None:
    """When the oldest row not yet sent was written (microseconds), or None when all are sent."""
    row = await conn.fetchrow("SELECT MIN(created_at) AS t FROM outbox WHERE sent_at IS NULL")
    return int(row["t"]) if row and row["t"] is not None else None


class SentMarker:
    """Marks published rows sent, many publishes per transaction (a flush every `every`
    seconds) instead of one transaction per publish. Rows published but not yet marked when
    the process dies are published again by the relay: at-least-once, as designed."""

    def __init__(self, db: Database, every: float = 0.02) -> None:
        self._db = db
        self._every = every
        self._pending: list[int] = []
        self._flusher: asyncio.Task[None] | None = None

    def mark(self, seqs: Sequence[int]) -> None:
        self._pending.extend(seqs)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="kiln-outbox-marker")

    async def _flush_soon(self) -> None:
        # Loop while rows keep coming: those marked during a flush are not in it.
        while self._pending:
            await asyncio.sleep(self._every)
            try:
                await self.flush()
            except StoreError as exc:
                # Left unsent: the relay publishes them again (consumers dedupe).
                log.warning("outbox.mark_sent_failed", error=str(exc))

    async def flush(self) -> None:
        """Mark everything published so far, now."""
        seqs, self._pending = self._pending, []
        if seqs:
            async with self._db.transaction() as conn:
                await mark_sent(conn, seqs, now_us())

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()
