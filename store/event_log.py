"""The event log: every image event again, numbered per folder, for the HTTP event stream.

Each folder's events get positions 1, 2, 3, … with no gaps, assigned in the transaction that
records the event. The position comes from the folder's row in `folder_positions`, bumped
with one upsert: that row stays locked until the transaction ends, so writers of one folder
take turns (writers of different folders never wait for each other) and commit in position
order. That is what makes reading simple and exact: a reader that sees position p has seen
every position below it, nothing rolled back leaves a hole (a rolled-back bump is undone
too), and a stream resumed after position p misses and repeats nothing. The price is that
event-writing transactions of one folder are serialized from their first event to commit;
they are short (one image's state change), so a folder still takes hundreds of state changes
a second. Counter rows are never deleted, so positions are never reused after pruning.

Rows are kept at least `RETENTION_US` (24 h); `prune` removes older ones in small batches.
"""

import msgspec

from store.clock import now_us
from store.db import Connection, Database

RETENTION_US = 24 * 3600 * 1_000_000
# Rows carry their writer's clock: keep a margin so that a pruner whose clock runs ahead
# still keeps every event its full retention.
CLOCK_SKEW_US = 5 * 60 * 1_000_000
PRUNE_BATCH = 5000


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


async def append(conn: Connection, folder_id: str, type: str, body: bytes, now: int) -> int:
    """Log an event in the caller's transaction; its position in the folder."""
    row = await conn.fetchrow(
        "INSERT INTO folder_positions (folder_id, last_position) VALUES (?, 1)"
        " ON CONFLICT (folder_id) DO UPDATE"
        " SET last_position = folder_positions.last_position + 1"
        " RETURNING last_position",
        folder_id,
    )
    assert row is not None, "an upsert returns its row"
    position = int(row["last_position"])
    await conn.execute(
        "INSERT INTO event_log (folder_id, position, type, body, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        folder_id,
        position,
        type,
        body,
        now,
    )
    return position


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
