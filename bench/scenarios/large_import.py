"""Large-image import: one raw image of each of `large_sizes` (2 GiB; 4 GiB too in the full run)
imported by uri from the local image server through a gateway and one worker; MiB/s from the
POST until READY, and the worker's peak RSS (VmHWM of its process, reset before each run).
Floor: fetch → sha256 → write of the same bytes from the same server in one stream, fsynced."""

import secrets
import time

import msgspec

from bench.config import GiB, MiB
from bench.floors.imports import stream_hash_write
from bench.load import Http
from bench.processes import (
    Kiln,
    children,
    image_source,
    postgres_database,
    rabbit_vhost,
)
from bench.results import ScenarioResult, compare, target
from bench.scenarios import Context
from bench.scenarios.common import IMAGES, fmt, wait_terminal

RSS_LIMIT = 200 * 10**6  # bytes: "worker RSS ≤ 200 MB"


async def run(ctx: Context) -> ScenarioResult:
    p = ctx.profile
    result = ScenarioResult(name="large-import", title="Large-image import")
    peaks: list[float] = []
    async with postgres_database() as dsn, rabbit_vhost() as amqp, children() as started:
        source = await image_source(started, ctx.workdir)
        kiln = Kiln(ctx.workdir, started, database_url=dsn, broker_url=amqp)
        gateway = await kiln.gateway()
        worker = await kiln.worker()
        idle_rss = worker.rss()
        async with Http(gateway.url, kiln.headers, 1) as http:
            for size in p.large_sizes:
                label = f"{size / GiB:g} GiB"
                floors: list[float] = []
                kilns: list[float] = []
                rss: list[float] = []
                for number in range(p.runs):
                    salt = secrets.token_hex(4)
                    floor_file = ctx.workdir / "floor.img"
                    floor = await stream_hash_write(
                        f"{source.url}/raw/{salt}-floor/{size}.raw", floor_file
                    )
                    floor_file.unlink(missing_ok=True)
                    floors.append(size / MiB / floor.elapsed)
                    ctx.log(f"large {label} run {number + 1} floor: {fmt(floors[-1])} MiB/s")
                    reset = worker.reset_peak()
                    folder = f"large-{size}-{number}"
                    body = msgspec.json.encode(
                        {"folderId": folder, "uri": f"{source.url}/raw/{salt}-kiln/{size}.raw"}
                    )
                    begin = time.perf_counter()
                    await http.post(IMAGES, body)
                    counts = await wait_terminal(dsn, folder, 1, p.import_deadline)
                    elapsed = time.perf_counter() - begin
                    ready = counts.get("READY", 0) == 1
                    kilns.append(size / MiB / elapsed if ready else 0.0)
                    rss.append(worker.peak_rss() / 10**6)
                    peaks.append(rss[-1])
                    for blob in (kiln.blob_root / "sha256").rglob("*"):
                        if blob.is_file():
                            blob.unlink()
                    ctx.log(
                        f"large {label} run {number + 1} Kiln: {fmt(kilns[-1])} MiB/s"
                        f" ({counts}), worker peak RSS {fmt(rss[-1])} MB"
                        + ("" if reset else " (peak not reset: since start)")
                    )
                speed = compare(f"import {label} MiB/s", "MiB/s", "throughput", kilns, floors)
                assert speed.floor is not None
                speed.limit = 0.8 * speed.floor.median
                result.comparisons += [
                    speed,
                    compare(
                        f"worker peak RSS, {label}", "MB", "memory", rss, limit=RSS_LIMIT / 10**6
                    ),
                ]
                ratio = speed.ratio or 0
                result.targets.append(
                    target(
                        f"large-image import ({label}) ≥ 80 % of its floor",
                        ratio >= 0.8,
                        f"{fmt(speed.kiln.median)} vs {fmt(speed.floor.median)} MiB/s"
                        f" = {fmt(100 * ratio)} %",
                    )
                )
    result.targets.append(
        target(
            "worker RSS ≤ 200 MB whatever the image size",
            bool(peaks) and max(peaks) <= RSS_LIMIT / 10**6,
            f"peak {fmt(max(peaks) if peaks else float('nan'))} MB over"
            f" {', '.join(f'{s / GiB:g} GiB' for s in p.large_sizes)}",
        )
    )
    result.notes.append(
        f"one worker; its RSS when idle, before the first import: {fmt(idle_rss / 10**6)} MB;"
        " peak RSS is VmHWM from /proc/<pid>/status, reset (clear_refs 5) before each run;"
        " MB = 10⁶ bytes, MiB = 2²⁰"
    )
    return result
