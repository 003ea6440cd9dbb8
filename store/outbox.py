"""The outbox: messages written with their state change, published after commit."""

from collections.abc import Sequence

from contracts.outbox import OutboxMessage
from store.db import Connection, Row


async def add(conn: Connection, message: OutboxMessage, now: int) -> OutboxMessage:
    row = await conn.fetchrow(
        "INSERT INTO outbox (exchange, routing_key, message_id, content_type, type,"
        " correlation_id, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        message.exchange,
        message.routing_key,
        message.message_id,
        message.content_type,
        message.type,
        message.correlation_id,
        message.body,
        now,
    )
    assert row is not None
    return OutboxMessage(**{**_fields(message), "seq": int(row["seq"])})


def _fields(message: OutboxMessage) -> dict[str, object]:
    return {name: getattr(message, name) for name in message.__struct_fields__}


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
    rows = await conn.fetch(
        "SELECT seq, exchange, routing_key, message_id, content_type, type, correlation_id, body"
        " FROM outbox WHERE sent_at IS NULL AND created_at < ? ORDER BY seq LIMIT ?",
        created_before,
        limit,
    )
    return [_from_row(row) for row in rows]


async def mark_sent(conn: Connection, seqs: Sequence[int], now: int) -> None:
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        await conn.execute(f"UPDATE outbox SET sent_at = ? WHERE seq IN ({marks})", now, *chunk)


async def backlog(conn: Connection) -> int:
    row = await conn.fetchrow("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL")
    return int(row["n"]) if row else 0


async def oldest_unsent(conn: Connection) -> int | None:
    """When the oldest row not yet sent was written (microseconds), or None when all are sent."""
    row = await conn.fetchrow("SELECT MIN(created_at) AS t FROM outbox WHERE sent_at IS NULL")
    return int(row["t"]) if row and row["t"] is not None else None
