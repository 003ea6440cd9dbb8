"""The event log: every image event again, numbered per folder, for the HTTP event stream.

Each folder's events get positions 1, 2, 3, … with no gaps. A writer only queues its event
(`append`, in the transaction that records it); the sequencer (`sequence`) later moves what
has committed from `event_queue` into `event_log`, numbering it from the folder's row in
`folder_positions`. Sequencer passes run one at a time (an advisory lock on PostgreSQL;
SQLite transactions are serialized anyway), so positions commit in order. That is what makes
reading simple and exact: a reader that sees position p has seen every position below it,
nothing rolled back leaves a hole (a rolled-back event was never queued), and a stream
resumed after position p misses and repeats nothing.

Numbering in the writer's transaction would be simpler but serializes every event-writing
transaction of a folder on its counter row until commit: measured with the create benchmark
(one folder), 17 of the gateway's 20 connections waited on that lock. One image's transactions
are still queued in commit order (its image row is locked), so they are numbered in order.
Counter rows are never deleted, so positions are never reused after pruning.

Rows are kept at least `RETENTION_US` (24 h); `prune` removes older ones in small batches.
"""

from collections.abc import Sequence

import msgspec

from runtime.clock import now_us
from store.db import Connection, Database, Row, lock_until_commit

RETENTION_US = 24 * 3600 * 1_000_000
# Rows carry their writer's clock: keep a margin so that a pruner whose clock runs ahead
# still keeps every event its full retention.
CLOCK_SKEW_US = 5 * 60 * 1_000_000
PRUNE_BATCH = 5000
SEQUENCE_BATCH = 1000
# Any fixed number: the advisory lock that makes sequencer passes take turns.
_SEQUENCER_LOCK = 7_245_817


class Entry(msgspec.Struct, frozen=True):
    """One logged event: its folder position, CloudEvent type and CloudEvents JSON body."""

    position: int
    type: str
    body: bytes


class Page(msgspec.Struct, frozen=True):
    """Entries after a position, and the folder's last position when they were read."""

    after: int
    last_position: int
    entries: list[Entry]

    @property
    def beyond_end(self) -> bool:
        """`after` names a position the folder never had."""
        return self.after > self.last_position

    @property
    def pruned(self) -> bool:
        """Events right after `after` existed but were pruned: reading on would skip them."""
        if self.entries:
            return self.entries[0].position != self.after + 1
        return self.last_position > self.after


async def append(conn: Connection, folder_id: str, type: str, body: bytes, now: int) -> None:
    """Queue an event for the log in the caller's transaction; `sequence` numbers it."""
    await append_many(conn, [(folder_id, type, body, now)])


async def append_many(conn: Connection, events: Sequence[tuple[str, str, bytes, int]]) -> None:
    """Queue events given as (folder id, type, body, time µs)."""
    if events:
        await conn.executemany(
            "INSERT INTO event_queue (folder_id, type, body, created_at) VALUES (?, ?, ?, ?)",
            events,
        )


async def sequence(db: Database, batch: int = SEQUENCE_BATCH) -> int:
    """Number every committed queued event into the log; how many there were."""
    total = 0
    while True:
        async with db.transaction() as conn:
            taken = await _sequence_batch(conn, batch)
        total += taken
        if taken < batch:
            return total


async def _sequence_batch(conn: Connection, batch: int) -> int:
    """Move up to `batch` of the oldest queued events into the log; how many it moved."""
    await lock_until_commit(conn, _SEQUENCER_LOCK)
    rows = await conn.fetch(
        "SELECT seq, folder_id, type, body, created_at FROM event_queue ORDER BY seq LIMIT ?",
        batch,
    )
    by_folder: dict[str, list[Row]] = {}
    for row in rows:
        by_folder.setdefault(row["folder_id"], []).append(row)
    entries = []
    for folder_id, queued in by_folder.items():
        first = await _advance(conn, folder_id, len(queued)) - len(queued) + 1
        entries += [
            (folder_id, first + n, row["type"], bytes(row["body"]), row["created_at"])
            for n, row in enumerate(queued)
        ]
    if rows:
        await conn.executemany(
            "INSERT INTO event_log (folder_id, position, type, body, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            entries,
        )
        # By seq, not by range: an event queued below the newest one taken may commit later.
        await conn.executemany(
            "DELETE FROM event_queue WHERE seq = ?", [(row["seq"],) for row in rows]
        )
    return len(rows)


async def _advance(conn: Connection, folder_id: str, count: int) -> int:
    """Add `count` positions to the folder's counter; its new last position."""
    row = await conn.fetchrow(
        "INSERT INTO folder_positions (folder_id, last_position) VALUES (?, ?)"
        " ON CONFLICT (folder_id) DO UPDATE"
        " SET last_position = folder_positions.last_position + excluded.last_position"
        " RETURNING last_position",
        folder_id,
        count,
    )
    assert row is not None, "an upsert returns its row"
    return int(row["last_position"])


async def last_position(conn: Connection, folder_id: str) -> int:
    """The folder's newest position (0 before its first event)."""
    row = await conn.fetchrow(
        "SELECT last_position FROM folder_positions WHERE folder_id = ?", folder_id
    )
    return int(row["last_position"]) if row else 0


async def read_after(conn: Connection, folder_id: str, after: int, limit: int) -> Page:
    """Up to `limit` entries with positions above `after`, oldest first.

    The last position is read first: whatever it names was committed, so an entry missing
    below it afterwards was pruned (PostgreSQL reads each statement at a new snapshot)."""
    last = await last_position(conn, folder_id)
    if last <= after:
        return Page(after=after, last_position=last, entries=[])
    rows = await conn.fetch(
        "SELECT position, type, body FROM event_log"
        " WHERE folder_id = ? AND position > ? ORDER BY position LIMIT ?",
        folder_id,
        after,
        limit,
    )
    entries = [Entry(int(r["position"]), r["type"], bytes(r["body"])) for r in rows]
    return Page(after=after, last_position=last, entries=entries)


async def prune(db: Database, older_than: int, batch: int = PRUNE_BATCH) -> int:
    """Delete entries created before `older_than` (µs), a batch per transaction so that
    writers wait little; how many were deleted."""
    total = 0
    while True:
        async with db.transaction() as conn:
            deleted = await conn.execute(
                "DELETE FROM event_log WHERE (folder_id, position) IN"
                " (SELECT folder_id, position FROM event_log WHERE created_at < ? LIMIT ?)",
                older_than,
                batch,
            )
        total += deleted
        if deleted < batch:
            return total


async def prune_expired(db: Database) -> int:
    """Apply the retention: delete what is older than `RETENTION_US` (and the margin)."""
    return await prune(db, now_us() - RETENTION_US - CLOCK_SKEW_US)
