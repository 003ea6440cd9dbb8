"""Idempotency keys: the same key and caller map to the operation they first created."""

import msgspec

from store.db import Connection

RETENTION_US = 24 * 3600 * 1_000_000


class Claim(msgspec.Struct, frozen=True):
    """Who sent which key with which request (a fingerprint of method, path and body)."""

    subject: str
    key: str
    fingerprint: str


class Previous(msgspec.Struct, frozen=True):
    operation_id: str
    fingerprint: str


async def claim(conn: Connection, claim: Claim, operation_id: str, now: int) -> Previous | None:
    """Record the key for `operation_id`; if it was taken already, what it was taken for."""
    inserted = await conn.execute(
        "INSERT INTO idempotency_keys (subject, key, fingerprint, operation_id, created_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        claim.subject,
        claim.key,
        claim.fingerprint,
        operation_id,
        now,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "SELECT operation_id, fingerprint FROM idempotency_keys WHERE subject = ? AND key = ?",
        claim.subject,
        claim.key,
    )
    assert row is not None, "a conflicting key row exists"
    return Previous(operation_id=row["operation_id"], fingerprint=row["fingerprint"])


async def expire(conn: Connection, now: int) -> int:
    return await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < ?", now - RETENTION_US
    )
