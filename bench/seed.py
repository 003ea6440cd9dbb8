"""Rows written straight into Kiln's `images` table (after Kiln migrated the store): READY
images with ids, names and creation times in one order, so a folder of a million is seeded in
about a minute with COPY (PostgreSQL) or one executemany (SQLite)."""

import sqlite3
import time
from collections.abc import Iterator

import asyncpg
import msgspec

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
COLUMNS = [
    "id",
    "folder_id",
    "name",
    "family",
    "status",
    "created_at",
    "size",
    "storage_size",
    "min_disk_size",
    "blob_digest",
    "event_seq",
    "spec",
]
BATCH = 100_000
SIZE = 256 * 1024
SPEC = '{"description":"seeded by the benchmark","labels":{"bench":"read-path","os":"linux"}}'


def base36(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 36)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


class Seeded(msgspec.Struct, frozen=True):
    """`count` images of `folder`; image `i`'s id is `id(i)`, ids ascending with `i`."""

    folder: str
    count: int
    tag: int  # milliseconds at seeding: keeps ids of different seedings apart
    start_us: int

    def id(self, index: int) -> str:
        # 20 characters like Kiln's ids: "img", 9 time digits, 8 more
        return "img" + base36(self.tag, 9) + base36(index, 8)


def new_seed(folder: str, count: int) -> Seeded:
    now_ns = time.time_ns()
    return Seeded(folder=folder, count=count, tag=now_ns // 1_000_000, start_us=now_ns // 1000)


def rows(seed: Seeded, start: int, stop: int) -> Iterator[tuple[object, ...]]:
    for index in range(start, stop):
        yield (
            seed.id(index),
            seed.folder,
            f"image-{seed.tag:x}-{index:07d}",
            "bench-family",
            "READY",
            seed.start_us + index,
            SIZE,
            SIZE,
            4 * 1024 * 1024,
            f"{seed.tag:016x}{index:048x}",
            3,
            SPEC,
        )


async def seed_postgres(dsn: str, folder: str, count: int) -> Seeded:
    """COPY `count` READY images into `folder`, then ANALYZE (as autovacuum soon would)."""
    seed = new_seed(folder, count)
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, count, BATCH):
            await conn.copy_records_to_table(
                "images", records=rows(seed, start, min(count, start + BATCH)), columns=COLUMNS
            )
        await conn.execute("ANALYZE images")
    finally:
        await conn.close()
    return seed


def seed_sqlite(path: str, folder: str, count: int) -> Seeded:
    """Insert `count` READY images into `folder` of Kiln's SQLite store in one transaction."""
    seed = new_seed(folder, count)
    conn = sqlite3.connect(path, timeout=30)
    try:
        marks = ", ".join("?" for _ in COLUMNS)
        sql = f"INSERT INTO images ({', '.join(COLUMNS)}) VALUES ({marks})"
        with conn:
            for start in range(0, count, BATCH):
                conn.executemany(sql, rows(seed, start, min(count, start + BATCH)))
    finally:
        conn.close()
    return seed
