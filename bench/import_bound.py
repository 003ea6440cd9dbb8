"""`python -m bench.import_bound [--count N] [--runs R] [--size-kib S]`: how close small imports
can come to their floor on this machine with Kiln's gateway in front, whatever the workers do.
Three sides alternate in each run, each on files of its own:

- floor: the small-imports floor alone (fetch, sha256, fsync-write, workers × fetches at once);
- bound: the same floor on N files while Kiln's gateway, with no worker started, answers N
  creates of N other files at 64 connections, both at once. An import through Kiln costs at
  least this: its create (HTTP, the gateway's transaction, a confirmed command) and the
  floor's fetch. What a worker adds (the delivery and its ack, two transactions, three
  confirmed events, format inspection) comes on top. The commands are purged afterwards;
- Kiln: the small-imports measurement (a gateway and two workers, first POST to last READY).

For each side: images/s, and the CPU the whole machine spent per image (/proc/stat: every
process, PostgreSQL's, RabbitMQ's and the image server's included). Starts its own databases,
vhosts, image server, gateways and workers in a temporary directory and removes them after."""

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

import msgspec

from bench.config import FULL, KiB
from bench.floors.imports import fetch_hash_write
from bench.load import Http, closed_loop
from bench.processes import Child, Kiln, children, image_source, postgres_database, rabbit_vhost
from bench.scenarios import Context
from bench.scenarios.common import IMAGES, fmt, purge
from bench.scenarios.create_rate import KILN_QUEUE
from bench.scenarios.small_imports import (
    POST_CONNECTIONS,
    floor_imports,
    kiln_imports,
    qcow2_urls,
)

SIDES = ("floor", "bound", "kiln")
WARMUP = 64


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (every core, every process)."""
    with open("/proc/stat") as stat:
        # user nice system idle iowait irq softirq steal
        ticks = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class Side(msgspec.Struct, kw_only=True):
    rates: list[float] = []  # images/s, one per run
    cpu: list[float] = []  # machine CPU ms per image, one per run

    def summary(self) -> str:
        return (
            f"{fmt(statistics.median(self.rates))} images/s"
            f" ({', '.join(fmt(r) for r in self.rates)}),"
            f" machine CPU {fmt(statistics.median(self.cpu), 2)} ms per image"
            f" ({', '.join(fmt(c, 2) for c in self.cpu)})"
        )


class Running(msgspec.Struct, kw_only=True):
    """A gateway and its workers on their own database, and a client of the gateway."""

    http: Http
    processes: list[Child]
    dsn: str
    blob_root: Path


class Sides:
    """The three sides, on one image server: `kiln` is a gateway with workers; `lone` is a
    client of a gateway without any, whose commands go to the vhost `lone_amqp`."""

    def __init__(
        self, ctx: Context, source_url: str, kiln: Running, lone: Http, lone_amqp: str
    ) -> None:
        self.ctx = ctx
        self.source_url = source_url
        self.kiln = kiln
        self.lone = lone
        self.lone_amqp = lone_amqp
        self.concurrency = ctx.profile.import_workers * ctx.profile.worker_fetches

    def urls(self, salt: str, count: int) -> list[str]:
        return qcow2_urls(self.source_url, self.ctx.profile.small_size, salt, count)

    async def floor(self, salt: str, count: int) -> int:
        floor, _ = await floor_imports(self.ctx, self.urls(salt, count), self.concurrency)
        return floor.ok

    async def bound(self, salt: str, count: int) -> int:
        """Creates of `count` files through the worker-less gateway while the floor imports
        `count` others; the images both sides finished."""
        bodies = [
            msgspec.json.encode({"folderId": "bound", "uri": url})
            for url in self.urls(f"{salt}-created", count)
        ]

        async def create(index: int) -> None:
            await self.lone.post(IMAGES, bodies[index])

        deadline, files = self.ctx.profile.import_deadline, self.ctx.workdir / "bound-files"
        posted, floor = await asyncio.gather(
            closed_loop(create, count=count, concurrency=POST_CONNECTIONS, deadline=deadline),
            fetch_hash_write(self.urls(salt, count), self.concurrency, files, deadline),
        )
        shutil.rmtree(files, ignore_errors=True)
        await purge(self.lone_amqp, [KILN_QUEUE])
        return min(posted.ok, floor.ok)

    async def imports(self, salt: str, count: int) -> int:
        ctx, kiln = self.ctx, self.kiln
        urls = self.urls(salt, count)
        folder = f"imports-{salt}"
        run = await kiln_imports(ctx, kiln.http, kiln.processes, kiln.dsn, urls, folder)
        shutil.rmtree(kiln.blob_root / "sha256", ignore_errors=True)
        return run.ready


async def _measured(side: Side, count: int, work: Awaitable[int]) -> None:
    """Run `work` (importing `count` images) and record its rate and machine CPU per image."""
    cpu, started = machine_cpu_seconds(), time.perf_counter()
    done = await work
    elapsed = time.perf_counter() - started
    if done != count:
        raise RuntimeError(f"{done} of {count} images imported")
    side.rates.append(count / elapsed)
    side.cpu.append(1000 * (machine_cpu_seconds() - cpu) / count)


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Side]:
    profile = msgspec.structs.replace(FULL, small_size=args.size_kib * KiB)
    ctx = Context(profile=profile, workdir=workdir)
    measured = {name: Side() for name in SIDES}
    async with (
        postgres_database() as dsn,
        rabbit_vhost() as amqp,
        postgres_database() as lone_dsn,
        rabbit_vhost() as lone_amqp,
        children() as started,
    ):
        source = await image_source(started, workdir, str(profile.small_size))
        kiln = Kiln(workdir, started, database_url=dsn, broker_url=amqp)
        gateway = await kiln.gateway()
        workers = [await kiln.worker() for _ in range(profile.import_workers)]
        (workdir / "lone").mkdir()
        lone = Kiln(workdir / "lone", started, database_url=lone_dsn, broker_url=lone_amqp)
        lone_gateway = await lone.gateway()
        async with (
            Http(gateway.url, kiln.headers, POST_CONNECTIONS) as http,
            Http(lone_gateway.url, lone.headers, POST_CONNECTIONS) as lone_http,
        ):
            running = Running(
                http=http, processes=[gateway, *workers], dsn=dsn, blob_root=kiln.blob_root
            )
            sides = Sides(ctx, source.url, running, lone_http, lone_amqp)
            runs = {"floor": sides.floor, "bound": sides.bound, "kiln": sides.imports}
            for name, run in runs.items():
                await run(f"warm-{name}", WARMUP)
            for number in range(args.runs):
                salt = secrets.token_hex(4)
                for name, run in runs.items():
                    await _measured(measured[name], args.count, run(f"{salt}-{name}", args.count))
                ctx.log(f"run {number + 1}: " + ", ".join(
                    f"{name} {fmt(side.rates[-1])} images/s" for name, side in measured.items()
                ))  # fmt: skip
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.import_bound", description=__doc__)
    parser.add_argument("--count", type=int, default=5000, help="images per side and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-kib", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-bound-") as workdir:
        sides = asyncio.run(measure(args, Path(workdir)))
    floor = statistics.median(sides["floor"].rates)
    for name, side in sides.items():
        share = statistics.median(side.rates) / floor
        print(f"{name}: {side.summary()}; {fmt(100 * share)} % of the floor")


if __name__ == "__main__":
    main()
