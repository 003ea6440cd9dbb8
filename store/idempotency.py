"""Idempotency keys: the same key and caller map to the operation they first created."""

from collections.abc import Sequence

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


async def find(conn: Connection, claims: Sequence[Claim]) -> dict[tuple[str, str], Previous]:
    """The earlier claims of these (subject, key) pairs, by pair."""
    if not claims:
        return {}
    pairs = ", ".join("(?, ?)" for _ in claims)
    rows = await conn.fetch(
        "SELECT subject, key, operation_id, fingerprint FROM idempotency_keys"
        f" WHERE (subject, key) IN ({pairs})",
        *(value for claim in claims for value in (claim.subject, claim.key)),
    )
    return {
        (row["subject"], row["key"]): Previous(row["operation_id"], row["fingerprint"])
        for row in rows
    }


async def insert_many(conn: Connection, claims: Sequence[tuple[Claim, str]], now: int) -> None:
    """Record keys known to be free, each for its operation id; a key claimed meanwhile by
    another transaction raises UniqueViolation. Written in key order, so that two batches
    with keys in common cannot deadlock."""
    rows = sorted((c.subject, c.key, c.fingerprint, op_id, now) for c, op_id in claims)
    await conn.executemany(
        "INSERT INTO idempotency_keys (subject, key, fingerprint, operation_id, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        rows,
    )


async def expire(conn: Connection, now: int) -> int:
    return await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < ?", now - RETENTION_US
    )
