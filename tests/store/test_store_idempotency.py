"""Idempotency keys: the first claim wins, later ones learn what it was for; old keys expire."""

import asyncio

from store import Database, idempotency
from store.idempotency import RETENTION_US, Claim, Previous

T0 = 1_700_000_000_000_000


async def claim(db: Database, key: Claim, operation_id: str, now: int = T0) -> Previous | None:
    async with db.transaction() as conn:
        return await idempotency.claim(conn, key, operation_id, now)


async def test_first_claim_wins(db: Database) -> None:
    first = Claim(subject="ajeuser1", key="k-1", fingerprint="POST /images sha256:aa")
    again = Claim(subject="ajeuser1", key="k-1", fingerprint="POST /images sha256:bb")

    assert await claim(db, first, "opr1") is None
    assert await claim(db, first, "opr2", T0 + 1) == Previous(
        operation_id="opr1", fingerprint=first.fingerprint
    )
    assert await claim(db, again, "opr3", T0 + 2) == Previous(
        operation_id="opr1", fingerprint=first.fingerprint
    )


async def test_keys_are_per_subject(db: Database) -> None:
    mine = Claim(subject="ajeuser1", key="k-1", fingerprint="fp1")
    theirs = Claim(subject="ajeuser2", key="k-1", fingerprint="fp2")

    assert await claim(db, mine, "opr1") is None
    assert await claim(db, theirs, "opr2") is None
    assert await claim(db, theirs, "opr3") == Previous(operation_id="opr2", fingerprint="fp2")
    assert await claim(db, mine, "opr4") == Previous(operation_id="opr1", fingerprint="fp1")


async def test_expire_removes_only_old_keys(db: Database) -> None:
    old = Claim(subject="ajeuser1", key="old", fingerprint="fp-old")
    edge = Claim(subject="ajeuser1", key="edge", fingerprint="fp-edge")
    new = Claim(subject="ajeuser1", key="new", fingerprint="fp-new")
    await claim(db, old, "opr1", T0)
    await claim(db, edge, "opr2", T0 + 10)
    await claim(db, new, "opr3", T0 + RETENTION_US)
    now = T0 + RETENTION_US + 10  # `edge` is exactly RETENTION_US old: kept

    async with db.transaction() as conn:
        assert await idempotency.expire(conn, now) == 1
        assert await idempotency.expire(conn, now) == 0

    assert await claim(db, old, "opr4", now) is None  # free again
    assert await claim(db, edge, "opr5", now) == Previous(
        operation_id="opr2", fingerprint="fp-edge"
    )
    assert await claim(db, new, "opr6", now) == Previous(operation_id="opr3", fingerprint="fp-new")


async def test_concurrent_claims_have_one_winner(db: Database) -> None:
    key = Claim(subject="ajeuser1", key="k-1", fingerprint="fp")

    results = await asyncio.gather(*(claim(db, key, f"opr{n}") for n in range(6)))

    winners = [n for n, result in enumerate(results) if result is None]
    assert len(winners) == 1
    previous = Previous(operation_id=f"opr{winners[0]}", fingerprint="fp")
    assert [result for result in results if result is not None] == [previous] * 5
