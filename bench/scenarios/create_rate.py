"""Create rate: POST create (source = imageId of a READY image, so no bytes move) at 64
connections for a fixed count, against its floor (bench/floors/create_server.py) and against
moto_server's EC2 RegisterImage; then get at the same 64 connections, against the floor's
SELECT-by-id handler and moto's DescribeImages.

Only the gateway runs (no worker): the work measured is accepting the call. Every create goes
to one folder, as a batch import's would. The commands pile up in their queue, which is purged
before each run, as is the floor's. Besides calls/s and latency, the server process's CPU time
per call is recorded (user + system, from /proc): on a shared machine it moves less than rates do.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import boto3
import msgspec
from botocore.config import Config

from bench.floors.create_server import QUEUE as FLOOR_QUEUE
from bench.load import Http, LoadResult, closed_loop, threaded_closed_loop
from bench.processes import (
    Child,
    Kiln,
    children,
    free_port,
    moto_server,
    postgres_database,
    py_spy,
    python_module,
    rabbit_vhost,
)
from bench.results import Comparison, ScenarioResult, compare, target
from bench.scenarios import Context
from bench.scenarios.common import IMAGES, fmt, purge
from bench.seed import seed_postgres

KILN_QUEUE = "kiln.image.create"
FOLDER = "bench-create"
FLOOR_FOLDER = "bench-floor"
SIDES = ("floor", "kiln", "peer")
Call = Callable[[int], Awaitable[None]]


class Measured(msgspec.Struct, kw_only=True):
    """One side's runs of one operation, with the server's CPU seconds per run."""

    loads: list[LoadResult] = []
    cpu: list[float] = []

    def add(self, load: LoadResult, cpu: float = float("nan")) -> None:
        self.loads.append(load)
        self.cpu.append(cpu)


async def _timed(
    call: Callable[[int], Awaitable[Any]], server: Child, count: int, conns: int, deadline: float
) -> tuple[LoadResult, float]:
    """A closed-loop run and the CPU seconds `server` used during it."""
    before = server.cpu_seconds()
    load = await closed_loop(call, count=count, concurrency=conns, deadline=deadline)
    return load, server.cpu_seconds() - before


def _moto_client(url: str, connections: int) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(max_pool_connections=connections, retries={"max_attempts": 1}),
    )


def _moto_register(
    client: Any, run: int, count: int, concurrency: int, deadline: float
) -> tuple[LoadResult, list[str]]:
    ids: list[str] = []

    def call(index: int) -> None:
        answer = client.register_image(
            Name=f"bench-{run}-{index}",
            RootDeviceName="/dev/sda1",
            Architecture="x86_64",
            VirtualizationType="hvm",
        )
        ids.append(answer["ImageId"])

    result = threaded_closed_loop(call, count=count, concurrency=concurrency, deadline=deadline)
    return result, ids


def _moto_describe(
    client: Any, ids: list[str], count: int, concurrency: int, deadline: float
) -> LoadResult:
    def call(index: int) -> None:
        client.describe_images(ImageIds=[ids[index % len(ids)]])

    return threaded_closed_loop(call, count=count, concurrency=concurrency, deadline=deadline)


async def _image_ids(dsn: str, folder: str, limit: int) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id FROM images WHERE folder_id = $1 ORDER BY id LIMIT $2", folder, limit
        )
    finally:
        await conn.close()
    return [row["id"] for row in rows]


def _comparisons(label: str, sides: dict[str, Measured], peer: str) -> list[Comparison]:
    def figure(side: str, what: str) -> list[float]:
        measured = sides[side]
        if what == "cpu":
            return [
                1000 * cpu / load.ok if load.ok else float("nan")
                for load, cpu in zip(measured.loads, measured.cpu, strict=True)
            ]
        if what == "rate":
            return [load.rate for load in measured.loads]
        return [load.p(float(what)) for load in measured.loads]

    return [
        compare(f"{label} calls/s", "calls/s", "throughput",
                figure("kiln", "rate"), figure("floor", "rate"), figure("peer", "rate"), peer),
        compare(f"{label} p50", "ms", "latency",
                figure("kiln", "50"), figure("floor", "50"), figure("peer", "50"), peer),
        compare(f"{label} p99", "ms", "latency",
                figure("kiln", "99"), figure("floor", "99"), figure("peer", "99"), peer),
        compare(f"{label} server CPU per call", "ms", "cost",
                figure("kiln", "cpu"), figure("floor", "cpu"), figure("peer", "cpu"), peer,
                note="user + system CPU time of the server process (Kiln's gateway, the floor"
                " server, moto_server) during the run ÷ calls answered; PostgreSQL's and"
                " RabbitMQ's own CPU not included"),
    ]  # fmt: skip


async def run(ctx: Context) -> ScenarioResult:
    p = ctx.profile
    conns = p.create_concurrency
    result = ScenarioResult(name="create", title=f"Create rate (and get) at {conns} connections")
    creates = {side: Measured() for side in SIDES}
    gets = {side: Measured() for side in SIDES}
    async with postgres_database() as dsn, rabbit_vhost() as amqp, children() as started:
        kiln = Kiln(ctx.workdir, started, database_url=dsn, broker_url=amqp)
        gateway = await kiln.gateway()
        source = await seed_postgres(dsn, "bench-source", 1)
        floor = await python_module(
            started,
            ctx.workdir,
            "create-floor",
            "bench.floors.create_server",
            *("--dsn", dsn, "--amqp", amqp),
            port=free_port(),
        )
        moto = await moto_server(started, ctx.workdir)
        moto_client = _moto_client(moto.url, conns)
        kiln_body = msgspec.json.encode({"folderId": FOLDER, "imageId": source.id(0)})
        floor_body = msgspec.json.encode({"folderId": FLOOR_FOLDER, "imageId": source.id(0)})
        async with (
            Http(gateway.url, kiln.headers, conns) as kiln_http,
            Http(floor.url, {}, conns) as floor_http,
        ):

            async def kiln_create(_: int) -> None:
                await kiln_http.post(IMAGES, kiln_body, {"Idempotency-Key": str(uuid.uuid4())})

            async def floor_create(_: int) -> None:
                await floor_http.post("/images", floor_body)

            servers: dict[str, tuple[Call, Child]] = {
                "floor": (floor_create, floor),
                "kiln": (kiln_create, gateway),
            }
            ctx.log(f"create: warm-up ({p.create_warmup} calls each)")
            for call, _ in servers.values():
                await closed_loop(
                    call, count=p.create_warmup, concurrency=conns, deadline=p.load_deadline
                )
            moto_ids: list[str] = []
            for number in range(p.runs):
                await purge(amqp, [KILN_QUEUE, FLOOR_QUEUE])
                for side, (call, server) in servers.items():
                    first_kiln = side == "kiln" and number == 0
                    async with py_spy(
                        server, ctx.profile_path("gateway-create") if first_kiln else None
                    ):
                        load, cpu = await _timed(
                            call, server, p.create_count, conns, p.load_deadline
                        )
                    creates[side].add(load, cpu)
                    ctx.log(
                        f"create run {number + 1} {side}: {fmt(load.rate)} calls/s, p50"
                        f" {fmt(load.p(50))} ms, p99 {fmt(load.p(99))} ms, server CPU"
                        f" {fmt(1000 * cpu / max(1, load.ok), 2)} ms/call, errors {load.errors}"
                    )
                before = moto.cpu_seconds()
                load, ids = await asyncio.to_thread(
                    _moto_register, moto_client, number, p.peer_register_count, conns,
                    p.load_deadline,
                )  # fmt: skip
                creates["peer"].add(load, moto.cpu_seconds() - before)
                moto_ids += ids
                ctx.log(
                    f"create run {number + 1} moto RegisterImage: {fmt(load.rate)} calls/s,"
                    f" errors {load.errors}"
                )

            kiln_ids = await _image_ids(dsn, FOLDER, 5000)
            floor_ids = await _image_ids(dsn, FLOOR_FOLDER, 5000)

            async def kiln_get(index: int) -> None:
                await kiln_http.get(f"{IMAGES}/{kiln_ids[index % len(kiln_ids)]}")

            async def floor_get(index: int) -> None:
                await floor_http.get(f"/images/{floor_ids[index % len(floor_ids)]}")

            readers: dict[str, tuple[Call, Child]] = {
                "floor": (floor_get, floor),
                "kiln": (kiln_get, gateway),
            }
            for number in range(p.runs):
                for side, (call, server) in readers.items():
                    load, cpu = await _timed(
                        call, server, p.read_throughput_count, conns, p.load_deadline
                    )
                    gets[side].add(load, cpu)
                    ctx.log(
                        f"get run {number + 1} {side}: {fmt(load.rate)} calls/s,"
                        f" p99 {fmt(load.p(99))} ms, errors {load.errors}"
                    )
                before = moto.cpu_seconds()
                load = await asyncio.to_thread(
                    _moto_describe, moto_client, moto_ids, p.peer_describe_count, conns,
                    p.load_deadline,
                )  # fmt: skip
                gets["peer"].add(load, moto.cpu_seconds() - before)
                ctx.log(f"get run {number + 1} moto DescribeImages: {fmt(load.rate)} calls/s")

    result.comparisons += _comparisons("create", creates, "moto RegisterImage")
    result.comparisons += _comparisons(f"get@{conns}", gets, "moto DescribeImages")
    errors = {side: sum(load.errors for load in m.loads) for side, m in creates.items()}
    samples = [s for m in creates.values() for load in m.loads for s in load.error_samples][:3]
    result.notes.append(
        f"{p.create_count:,} creates per run and side ({p.peer_register_count:,} RegisterImage"
        f" for moto), after {p.create_warmup} warm-up calls; {conns} connections;"
        f" an Idempotency-Key on every Kiln create; errors: {errors}"
        + (f"; e.g. {samples}" if samples else "")
    )
    result.notes.append(
        f"get: {p.read_throughput_count:,} calls per run and side ({p.peer_describe_count:,}"
        " DescribeImages for moto) of the images the runs created"
    )
    rate, p99 = result.comparisons[0], result.comparisons[2]
    assert rate.floor is not None and rate.peer is not None
    rate.limit, p99.limit = rate.floor.median, 100.0
    times_moto = rate.kiln.median / rate.peer.median if rate.peer.median else float("nan")
    result.targets += [
        target(
            "create rate ≥ 100 % of its floor",
            (rate.ratio or 0) >= 1.0,
            f"{fmt(rate.kiln.median)} vs {fmt(rate.floor.median)} calls/s"
            f" = {fmt(100 * (rate.ratio or 0))} %",
        ),
        target(
            f"create p99 ≤ 100 ms at {conns} connections",
            p99.kiln.median <= 100,
            f"p99 {fmt(p99.kiln.median)} ms",
        ),
        target(
            "create rate ≥ 5× moto's RegisterImage rate",
            times_moto >= 5,
            f"{fmt(rate.kiln.median)} vs {fmt(rate.peer.median)} calls/s = {fmt(times_moto)}×",
        ),
    ]
    return result
