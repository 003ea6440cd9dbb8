"""Small-image imports: `small_count` qcow2 images of 256 KiB (and `mib_count` of 1 MiB) POSTed
by uri from the local image server at 64 connections, timed from the first POST until every
image is READY or ERROR (the store polled every 100 ms), on a gateway and `import_workers`
workers. Floor: a bare asyncio client fetching, sha256-hashing and fsync-writing the same
files at Kiln's stream concurrency (workers × fetches). Every file is distinct, in every run.
Also recorded: CPU time per image of Kiln's processes (gateway + workers) and of the floor."""

import asyncio
import os
import secrets
import shutil
import time

import aiohttp
import msgspec

from bench.config import KiB, MiB
from bench.floors.imports import FloorImports, fetch_hash_write
from bench.load import Http, closed_loop
from bench.processes import (
    Child,
    Kiln,
    children,
    image_source,
    postgres_database,
    py_spy,
    rabbit_vhost,
)
from bench.results import ScenarioResult, compare, target
from bench.scenarios import Context
from bench.scenarios.common import IMAGES, fmt, wait_terminal

GLANCE_IMAGES_PER_S = 20.0  # Glance create+upload of 1 MiB images on this machine (issue 5)
POST_CONNECTIONS = 64
WARMUP = 64


class ImportRun(msgspec.Struct, kw_only=True):
    rate: float  # images READY per second
    ready: int
    failed: int  # ERROR, refused POSTs and images not finished in time
    elapsed: float
    cpu: float  # seconds of CPU used by the gateway and the workers


def qcow2_urls(source_url: str, size: int, salt: str, count: int) -> list[str]:
    """`count` distinct qcow2 files of `size` bytes on the image server (bench/sources.py)."""
    return [f"{source_url}/qcow2/{size}/{salt}/{i}.qcow2" for i in range(count)]


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


async def kiln_imports(
    ctx: Context, http: Http, processes: list[Child], dsn: str, urls: list[str], folder: str
) -> ImportRun:
    """Every url POSTed at 64 connections, timed until all are READY or ERROR; `processes`
    are the Kiln processes whose CPU time is counted."""
    encoded = [msgspec.json.encode({"folderId": folder, "uri": url}) for url in urls]

    async def create(index: int) -> None:
        await http.post(IMAGES, encoded[index])

    cpu_before = sum(p.cpu_seconds() for p in processes)
    started = time.perf_counter()
    posted = await closed_loop(
        create, count=len(urls), concurrency=POST_CONNECTIONS, deadline=ctx.profile.import_deadline
    )
    left = ctx.profile.import_deadline - (time.perf_counter() - started)
    counts = await wait_terminal(dsn, folder, posted.ok, max(1.0, left))
    elapsed = time.perf_counter() - started
    ready = counts.get("READY", 0)
    if posted.error_samples:
        ctx.log(f"  POST errors: {posted.error_samples[:2]}")
    return ImportRun(
        rate=ready / elapsed,
        ready=ready,
        failed=len(urls) - ready,
        elapsed=elapsed,
        cpu=sum(p.cpu_seconds() for p in processes) - cpu_before,
    )


async def floor_imports(
    ctx: Context, urls: list[str], concurrency: int
) -> tuple[FloorImports, float]:
    """The floor on `urls`, and the CPU seconds the harness spent on it."""
    floor_dir = ctx.workdir / "floor-files"
    before = _own_cpu()
    floor = await fetch_hash_write(urls, concurrency, floor_dir, ctx.profile.import_deadline)
    cpu = _own_cpu() - before
    shutil.rmtree(floor_dir, ignore_errors=True)
    return floor, cpu


async def run(ctx: Context) -> ScenarioResult:
    p = ctx.profile
    concurrency = p.import_workers * p.worker_fetches
    result = ScenarioResult(name="small-imports", title="Small-image imports")
    async with postgres_database() as dsn, rabbit_vhost() as amqp, children() as started:
        source = await image_source(started, ctx.workdir, f"{p.small_size},{MiB}")
        async with aiohttp.ClientSession() as session, session.get(f"{source.url}/info") as r:
            actual = (await r.json())["qcow2"]
        kiln = Kiln(
            ctx.workdir,
            started,
            database_url=dsn,
            broker_url=amqp,
            worker_prefetch=p.worker_prefetch,
            worker_fetches=p.worker_fetches,
        )
        gateway = await kiln.gateway()
        workers = await asyncio.gather(*(kiln.worker() for _ in range(p.import_workers)))
        processes = [gateway, *workers]

        def urls(size: int, salt: str, count: int) -> list[str]:
            return qcow2_urls(source.url, size, salt, count)

        async with Http(gateway.url, kiln.headers, POST_CONNECTIONS) as http:
            ctx.log(f"imports: warm-up ({WARMUP} images each side)")
            await floor_imports(ctx, urls(p.small_size, "warm-floor", WARMUP), concurrency)
            await kiln_imports(
                ctx, http, processes, dsn, urls(p.small_size, "warm", WARMUP), "warm"
            )
            for size, count in ((p.small_size, p.small_count), (MiB, p.mib_count)):
                label = f"{size // KiB} KiB" if size < MiB else f"{size // MiB} MiB"
                floors: list[tuple[FloorImports, float]] = []
                kilns: list[ImportRun] = []
                for number in range(p.runs):
                    salt = secrets.token_hex(4)
                    floor, floor_cpu = await floor_imports(
                        ctx, urls(size, f"{salt}-f", count), concurrency
                    )
                    floors.append((floor, floor_cpu))
                    ctx.log(
                        f"imports {label} run {number + 1} floor: {fmt(floor.rate)} images/s"
                        f" ({floor.ok} ok, {floor.failed} failed)"
                    )
                    first = number == 0 and size == p.small_size
                    async with (
                        py_spy(workers[0], ctx.profile_path("worker-imports") if first else None),
                        py_spy(gateway, ctx.profile_path("gateway-imports") if first else None),
                    ):
                        kiln_run = await kiln_imports(
                            ctx, http, processes, dsn, urls(size, f"{salt}-k", count),
                            f"imports-{size}-{number}",
                        )  # fmt: skip
                    shutil.rmtree(kiln.blob_root / "sha256", ignore_errors=True)
                    kilns.append(kiln_run)
                    ctx.log(
                        f"imports {label} run {number + 1} Kiln: {fmt(kiln_run.rate)} images/s"
                        f" ({kiln_run.ready} READY, {kiln_run.failed} failed or unfinished,"
                        f" {kiln_run.elapsed:.1f} s, {fmt(1000 * kiln_run.cpu / count)} ms CPU"
                        " per image)"
                    )
                rate = compare(
                    f"imports {label} images/s",
                    "images/s",
                    "throughput",
                    [k.rate for k in kilns],
                    [f.rate for f, _ in floors],
                )
                result.comparisons += [
                    rate,
                    compare(
                        f"imports {label} CPU per image",
                        "ms",
                        "cost",
                        [1000 * k.cpu / max(1, k.ready) for k in kilns],
                        [1000 * cpu / max(1, f.ok) for f, cpu in floors],
                        note="Kiln: CPU time of the gateway and the workers; floor: of the"
                        " harness process running it (PostgreSQL, RabbitMQ and the image"
                        " server not included)",
                    ),
                ]
                failures = sum(k.failed for k in kilns)
                result.notes.append(
                    f"{label} ({actual[str(size)]:,} bytes each): {count:,} images per run;"
                    f" Kiln failures (ERROR, refused or unfinished) over all runs: {failures}"
                )
                assert rate.floor is not None
                if size == p.small_size:
                    rate.limit = 0.5 * rate.floor.median
                    result.targets += [
                        target(
                            "small-image imports ≥ 50 % of their floor",
                            (rate.ratio or 0) >= 0.5,
                            f"{fmt(rate.kiln.median)} vs {fmt(rate.floor.median)}"
                            f" images/s = {fmt(100 * (rate.ratio or 0))} %",
                        ),
                        target(
                            "small-image imports: zero failures",
                            failures == 0,
                            f"{failures} of {count * p.runs:,}",
                        ),
                    ]
                else:
                    rate.limit = 20 * GLANCE_IMAGES_PER_S
                    result.targets.append(
                        target(
                            "1 MiB imports ≥ 20× Glance's ~20 images/s (≥ 400 images/s)",
                            rate.kiln.median >= rate.limit,
                            f"{fmt(rate.kiln.median)} images/s ="
                            f" {fmt(rate.kiln.median / GLANCE_IMAGES_PER_S)}× Glance",
                        )
                    )
    result.notes.append(
        f"{p.import_workers} workers, prefetch {p.worker_prefetch}, fetches {p.worker_fetches};"
        f" floor concurrency {concurrency}; Kiln's POSTs at {POST_CONNECTIONS} connections;"
        f" time runs from the first POST to the last image READY; {WARMUP} images imported by"
        " each side first"
    )
    return result
