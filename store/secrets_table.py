"""Deployment-wide secrets kept in the store, so every process shares them."""

import secrets

from store.db import Database


async def get_or_create(db: Database, name: str) -> str:
    """The named secret, created at random the first time any process asks."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
            name,
            secrets.token_hex(32),
        )
        row = await conn.fetchrow("SELECT value FROM secrets WHERE name = ?", name)
    assert row is not None
    return str(row["value"])
