"""Read path: get and a list page of 100 (the first page, and a deep page 90 % of the way in,
default order by id), one request at a time, at `pg_images` images in one folder on
PostgreSQL (`kiln gateway`) and `sqlite_images` on SQLite (`kiln dev`), rows seeded directly
into the store. Floor: the same queries run directly with asyncpg / sqlite3.

The deep page's token is minted with the gateway's own key (the `secrets` table) and code
(api.pagination), since walking there takes thousands of requests; before measuring, the
page it opens is checked to start at the expected image."""

import asyncio
import random
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import asyncpg
import msgspec

from bench.floors import reads
from bench.load import Http, LoadResult, closed_loop
from bench.processes import Kiln, children, postgres_database, rabbit_vhost
from bench.results import ScenarioResult, compare, target
from bench.scenarios import Context
from bench.scenarios.common import IMAGES, fmt
from bench.seed import Seeded, seed_postgres, seed_sqlite

FOLDER = "bench-read"
PAGE = 100
DEEP = 0.9
WARMUP = 200
PROBES = ("get", "list first page", "list deep page")

FloorRun = Callable[[reads.Query], Awaitable[LoadResult]]
Measured = dict[str, dict[str, list[LoadResult]]]  # "SQLite get" → side → runs


class Probe(msgspec.Struct, frozen=True):
    """One thing measured: the Kiln request path and the floor's query, for request `i`."""

    name: str
    path: Callable[[int], str]
    query: reads.Query


class _Id(msgspec.Struct):
    id: str


class _Page(msgspec.Struct, rename="camel"):
    images: list[_Id]
    next_page_token: str = ""


def deep_token(key_hex: str, seed: Seeded) -> str:
    """The pageToken Kiln issues for the page after image DEEP·count − 1 (order by id)."""
    from api.pagination import PageTokens  # Kiln's own: the token stays what Kiln issues

    after = seed.id(int(seed.count * DEEP) - 1)
    return PageTokens(bytes.fromhex(key_hex)).issue(f"images\n{seed.folder}\n\n", after)


def probes(seed: Seeded, token: str) -> list[Probe]:
    rng = random.Random(5)
    picks = [seed.id(rng.randrange(seed.count)) for _ in range(4096)]
    listing = f"{IMAGES}?folderId={seed.folder}&pageSize={PAGE}"
    deep_after = seed.id(int(seed.count * DEEP) - 1)
    return [
        Probe(
            "get",
            lambda i: f"{IMAGES}/{picks[i % len(picks)]}",
            lambda i: (reads.GET, (picks[i % len(picks)],)),
        ),
        Probe(
            "list first page",
            lambda i: listing,
            lambda i: (reads.FIRST_PAGE, (seed.folder, PAGE + 1)),
        ),
        Probe(
            "list deep page",
            lambda i: f"{listing}&pageToken={quote(token)}",
            lambda i: (reads.NEXT_PAGE, (seed.folder, deep_after, PAGE + 1)),
        ),
    ]


async def _check_deep(http: Http, probe: Probe, seed: Seeded) -> None:
    page = msgspec.json.decode(await http.get(probe.path(0)), type=_Page)
    expected = seed.id(int(seed.count * DEEP))
    if len(page.images) != PAGE or page.images[0].id != expected:
        raise RuntimeError(f"the deep page starts at {page.images[:1]}, not at {expected}")


async def _measure(
    ctx: Context, store: str, http: Http, seed: Seeded, key: str, floor: FloorRun, into: Measured
) -> None:
    """Warm up, check the deep page, then `runs` × (floor, Kiln) of every probe."""
    p = ctx.profile
    checks = probes(seed, deep_token(key, seed))
    await _check_deep(http, checks[2], seed)
    for probe in checks:

        async def call(index: int, probe: Probe = probe) -> None:
            await http.get(probe.path(index))

        await floor(probe.query)
        await closed_loop(call, count=WARMUP, concurrency=1, deadline=p.load_deadline)
    for _ in range(p.runs):
        for probe in checks:

            async def call(index: int, probe: Probe = probe) -> None:
                await http.get(probe.path(index))

            floor_run = await floor(probe.query)
            kiln_run = await closed_loop(
                call, count=p.read_count, concurrency=1, deadline=p.load_deadline
            )
            sides = into.setdefault(f"{store} {probe.name}", {"floor": [], "kiln": []})
            sides["floor"].append(floor_run)
            sides["kiln"].append(kiln_run)
            ctx.log(
                f"read {store} {probe.name}: floor p99 {fmt(floor_run.p(99), 2)} ms, Kiln p50"
                f" {fmt(kiln_run.p(50), 2)} / p99 {fmt(kiln_run.p(99), 2)} ms,"
                f" errors {kiln_run.errors} {kiln_run.error_samples[:1] or ''}"
            )


async def _postgres(ctx: Context, into: Measured) -> None:
    p = ctx.profile
    async with postgres_database() as dsn, rabbit_vhost() as amqp, children() as started:
        kiln = Kiln(ctx.workdir / "pg", started, database_url=dsn, broker_url=amqp)
        kiln.workdir.mkdir()
        gateway = await kiln.gateway()  # migrates the store; then rows are seeded under it
        ctx.log(f"read: seeding {p.pg_images:,} images into PostgreSQL")
        seed = await seed_postgres(dsn, FOLDER, p.pg_images)
        conn = await asyncpg.connect(dsn)
        try:
            key = await conn.fetchval("SELECT value FROM secrets WHERE name = 'page_tokens'")
        finally:
            await conn.close()

        async def floor(query: reads.Query) -> LoadResult:
            return await reads.postgres(
                dsn, query, count=p.read_count, concurrency=1, deadline=p.load_deadline
            )

        async with Http(gateway.url, kiln.headers, 1) as http:
            await _measure(ctx, "PostgreSQL", http, seed, key, floor, into)


async def _sqlite(ctx: Context, into: Measured) -> None:
    p = ctx.profile
    async with children() as started:
        kiln = Kiln(ctx.workdir / "sqlite", started)  # no URLs: SQLite, in-process bus
        kiln.workdir.mkdir()
        dev = await kiln.dev()
        path = str(Path(kiln.settings["data_dir"]) / "kiln.db")
        ctx.log(f"read: seeding {p.sqlite_images:,} images into SQLite")
        seed = await asyncio.to_thread(seed_sqlite, path, FOLDER, p.sqlite_images)
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT value FROM secrets WHERE name = 'page_tokens'").fetchone()

        async def floor(query: reads.Query) -> LoadResult:
            return await asyncio.to_thread(
                reads.sqlite, path, query, count=p.read_count, deadline=p.load_deadline
            )

        async with Http(dev.url, kiln.headers, 1) as http:
            await _measure(ctx, "SQLite", http, seed, row[0], floor, into)


async def run(ctx: Context) -> ScenarioResult:
    p = ctx.profile
    result = ScenarioResult(name="read", title="Read path")
    measured: Measured = {}
    await _postgres(ctx, measured)
    await _sqlite(ctx, measured)
    for name, sides in measured.items():
        for q in (50, 99):
            result.comparisons.append(
                compare(
                    f"{name} p{q}",
                    "ms",
                    "latency",
                    [r.p(q) for r in sides["kiln"]],
                    [r.p(q) for r in sides["floor"]],
                )
            )
    by = {c.metric: c for c in result.comparisons}
    lists = [by[f"PostgreSQL list {w} page p99"] for w in ("first", "deep")]
    get = by["PostgreSQL get p99"]
    for c in lists:
        c.limit = 20.0
    get.limit = 5.0
    scale = f"{p.pg_images:,} images" + ("" if p.pg_images >= 1_000_000 else " (not 1,000,000)")
    worst = max(c.kiln.median for c in lists)
    result.targets += [
        target(
            "read path: list p99 ≤ 20 ms on any page at 1,000,000 images (PostgreSQL)",
            worst <= 20,
            f"first {fmt(lists[0].kiln.median, 2)} ms, deep {fmt(lists[1].kiln.median, 2)} ms"
            f" at {scale}",
        ),
        target("read path: get p99 ≤ 5 ms", get.kiln.median <= 5, f"{fmt(get.kiln.median, 2)} ms"),
    ]
    errors = sum(r.errors for sides in measured.values() for r in sides["kiln"])
    result.notes.append(
        f"PostgreSQL: {p.pg_images:,} images in one folder (kiln gateway); SQLite:"
        f" {p.sqlite_images:,} (kiln dev); {p.read_count:,} requests per figure and run, one at"
        f" a time (a lone client's latency; get at 64 connections is in `create`), after"
        f" {WARMUP} warm-up requests; the deep page is the one after {DEEP:.0%} of the folder;"
        f" Kiln errors: {errors}"
    )
    return result
