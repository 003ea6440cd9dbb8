"""The read-path floor: the same queries Kiln's store makes for a get and for a keyset page of a
list (ordered by id, 101 rows for a page of 100), run directly with asyncpg / sqlite3 and their
rows fetched, nothing decoded or encoded."""

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from bench.load import LoadResult, closed_loop

COLUMNS = (
    "id, folder_id, name, family, status, created_at, size, storage_size, min_disk_size,"
    " blob_digest, event_seq, spec"
)
GET = f"SELECT {COLUMNS} FROM images WHERE id = $1"
FIRST_PAGE = f"SELECT {COLUMNS} FROM images WHERE folder_id = $1 ORDER BY id ASC LIMIT $2"
NEXT_PAGE = (
    f"SELECT {COLUMNS} FROM images WHERE folder_id = $1 AND (id) > ($2) ORDER BY id ASC LIMIT $3"
)

Query = Callable[[int], tuple[str, tuple[Any, ...]]]


def to_sqlite(sql: str) -> str:
    """$1, $2, … → ?"""
    for number in range(9, 0, -1):
        sql = sql.replace(f"${number}", "?")
    return sql


async def postgres(
    dsn: str, query: Query, *, count: int, concurrency: int, deadline: float
) -> LoadResult:
    """`query(i)` → (sql, args), run `count` times by `concurrency` connections."""
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    try:

        async def call(index: int) -> None:
            sql, args = query(index)
            async with pool.acquire() as conn:
                await conn.fetch(sql, *args)

        return await closed_loop(call, count=count, concurrency=concurrency, deadline=deadline)
    finally:
        await pool.close()


def sqlite(path: str, query: Query, *, count: int, deadline: float) -> LoadResult:
    """`query(i)` run `count` times, one at a time, on one stdlib sqlite3 connection."""
    conn = sqlite3.connect(path)
    latencies: list[float] = []
    started = time.perf_counter()
    try:
        for index in range(count):
            if time.perf_counter() - started > deadline:
                break
            sql, args = query(index)
            begin = time.perf_counter()
            conn.execute(to_sqlite(sql), args).fetchall()
            latencies.append((time.perf_counter() - begin) * 1000)
    finally:
        conn.close()
    return LoadResult(
        sent=len(latencies),
        ok=len(latencies),
        errors=0,
        elapsed=time.perf_counter() - started,
        latencies_ms=latencies,
        error_samples=[],
    )
