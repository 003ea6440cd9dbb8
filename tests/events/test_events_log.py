"""The event log on each store backend: per-folder, gap-free positions under concurrent
writers and sequencers, readers that never see a hole, retention."""

import asyncio
import random

import pytest

from contracts.enums import ImageStatus
from contracts.events import event_decoder
from runtime.clock import now_us
from store import Database, event_log, image_events, images
from store.db import StoreUnavailable
from store.event_log_sequencer import EventSequencer
from store.images import ImageRecord

FOLDERS = ("fa", "fb")
WRITERS, EVENTS_EACH = 8, 15

EXPIRED_US = event_log.RETENTION_US + event_log.CLOCK_SKEW_US + 1_000_000


class Rollback(Exception):
    pass


async def write(db: Database, folder: str, label: str, fail: bool) -> None:
    """One transaction logging an event; rolled back after logging when `fail`."""
    try:
        async with db.transaction() as conn:
            await event_log.append(conn, folder, "t", label.encode(), now_us())
            await asyncio.sleep(random.random() / 500)  # hold the folder's turn a little
            if fail:
                raise Rollback
    except Rollback:
        pass


async def read_all(db: Database, folder: str, after: int = 0) -> event_log.Page:
    async with db.transaction() as conn:
        return await event_log.read_after(conn, folder, after, 10_000)


async def test_positions_are_gap_free_per_folder_under_concurrent_writers(db: Database) -> None:
    plan = [
        (FOLDERS[w % 2], f"w{w}-{n}", random.random() < 0.2)
        for w in range(WRITERS)
        for n in range(EVENTS_EACH)
    ]
    seen: dict[str, list[int]] = {folder: [] for folder in FOLDERS}
    writing = True

    async def writer(w: int) -> None:
        for folder, label, fail in plan[w * EVENTS_EACH : (w + 1) * EVENTS_EACH]:
            await write(db, folder, label, fail)

    async def reader(folder: str) -> None:
        """Follows the folder as a stream does: it must never meet a hole."""
        cursor = 0
        while writing or cursor < (await read_all(db, folder)).last_position:
            async with db.transaction() as conn:
                page = await event_log.read_after(conn, folder, cursor, 7)
            assert not page.pruned, (cursor, page)
            seen[folder] += [entry.position for entry in page.entries]
            cursor = page.entries[-1].position if page.entries else cursor
            await asyncio.sleep(0)

    async def sequencer() -> None:
        """Small batches, two at once: passes must take turns and never number twice."""
        while writing:
            await event_log.sequence(db, batch=5)
            await asyncio.sleep(0)

    readers = [asyncio.create_task(reader(folder)) for folder in FOLDERS]
    sequencers = [asyncio.create_task(sequencer()) for _ in range(2)]
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    await event_log.sequence(db)
    writing = False
    await asyncio.gather(*readers, *sequencers)

    for folder in FOLDERS:
        committed = sorted(label for f, label, fail in plan if f == folder and not fail)
        page = await read_all(db, folder)
        assert [entry.position for entry in page.entries] == list(range(1, len(committed) + 1))
        assert page.last_position == len(committed)
        assert sorted(entry.body.decode() for entry in page.entries) == committed
        assert seen[folder] == list(range(1, len(committed) + 1))


async def test_record_logs_the_published_event(db: Database) -> None:
    image = ImageRecord(id="img1", folder_id="fa", status=ImageStatus.CREATING, created_at=1)
    async with db.transaction() as conn:
        await images.insert(conn, image)
        (first,) = await image_events.record(conn, [(image, [("created", "opr1", None)])])
        (second,) = await image_events.record(conn, [(image, [("ready", "opr1", None)])])
    assert (await read_all(db, "fa")).entries == []  # queued, not numbered yet
    assert await event_log.sequence(db) == 2

    page = await read_all(db, "fa")
    assert [(e.position, e.type) for e in page.entries] == [
        (1, "compute.image.created"),
        (2, "compute.image.ready"),
    ]
    assert [e.body for e in page.entries] == [first.body, second.body]
    assert event_decoder.decode(page.entries[1].body).folderid == "fa"
    assert (await read_all(db, "fb")).last_position == 0


async def test_prune_keeps_positions_and_reports_the_hole(db: Database) -> None:
    old, now = now_us() - EXPIRED_US, now_us()
    async with db.transaction() as conn:
        for n in range(5):
            await event_log.append(conn, "fa", "t", b"old", old + n)
        await event_log.append(conn, "fb", "t", b"old", old)
        await event_log.append(conn, "fa", "t", b"new", now)
    await event_log.sequence(db)

    assert await event_log.prune(db, now - event_log.RETENTION_US, batch=2) == 6
    assert await event_log.prune_expired(db) == 0

    page = await read_all(db, "fa")
    assert [e.position for e in page.entries] == [6] and page.pruned
    assert not (await read_all(db, "fa", after=5)).pruned
    emptied = await read_all(db, "fb")
    assert emptied.entries == [] and emptied.last_position == 1 and emptied.pruned
    async with db.transaction() as conn:
        await event_log.append(conn, "fa", "t", b"next", now)
    assert await event_log.sequence(db) == 1
    async with db.transaction() as conn:
        assert await event_log.last_position(conn, "fa") == 7
        beyond = await event_log.read_after(conn, "fa", 9, 10)
    assert beyond.beyond_end


async def test_a_caller_waiting_on_a_failed_pass_runs_one_of_its_own(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Y and Z ask while pass 1 runs; Y's pass 2 fails; Z must not count it as done."""
    sequencer = EventSequencer(db)
    real_sequence = event_log.sequence
    passes: list[str] = []
    first_running = asyncio.Event()
    release_first = asyncio.Event()

    async def flaky(database: Database) -> int:
        passes.append("pass")
        if len(passes) == 1:
            first_running.set()
            await release_first.wait()
        if len(passes) == 2:
            raise StoreUnavailable("store away for one pass")
        return await real_sequence(database)

    monkeypatch.setattr(event_log, "sequence", flaky)
    x = asyncio.create_task(sequencer.drain())
    await first_running.wait()
    async with db.transaction() as conn:
        await event_log.append(conn, "fa", "t", b"queued during pass 1", now_us())
    y = asyncio.create_task(sequencer.drain())
    z = asyncio.create_task(sequencer.drain())
    await asyncio.sleep(0)
    release_first.set()

    await x
    with pytest.raises(StoreUnavailable):
        await y
    await z
    assert len(passes) == 3
    assert [e.body for e in (await read_all(db, "fa")).entries] == [b"queued during pass 1"]
