"""`python -m bench work`: the work Kiln does for one create, one update and one small import
on PostgreSQL and RabbitMQ (issue 21), counted rather than timed. A gateway and one worker run
on a PostgreSQL server and a RabbitMQ node of the count's own; each kind of operation is made
`count` times one after another (concurrency 1, every batch a batch of one) and again
`concurrency` at a time, and the difference of the counters before and after, divided by
`count`, is one operation's work:

* SQL statements by kind and the rows they wrote, by table (pg_stat_statements, Kiln's role
  only; the harness's own queries run as another role), and explicit transactions (COMMITs);
* AMQP messages the broker received, confirmed, routed, delivered and had acknowledged;
* HTTP calls the client made, log lines each Kiln process wrote;
* CPU time of the gateway, the worker, every PostgreSQL process and the RabbitMQ node (from
  /proc), less what each used idle over as long a time, measured just before.
"""

import asyncio
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import asyncpg
import msgspec

from bench.config import KiB
from bench.load import Http, closed_loop
from bench.private_services import PrivatePostgres, PrivateRabbit, private_postgres, private_rabbit
from bench.processes import Child, Kiln, children, image_source, wait_until
from bench.scenarios.common import IMAGES

FOLDER = "bench-work"
SMALL = 256 * KiB
IDLE_SECONDS = 3.0
KINDS = ("create", "update", "small import")
_VERB = re.compile(r"^\s*(?:WITH\b.*?\)\s*)?(INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", re.I | re.S)


class Totals(msgspec.Struct, kw_only=True):
    """Every counter at one moment."""

    statements: Counter[str]  # calls, by what a statement does to which table
    rows: Counter[str]  # rows written, by the same
    messages: dict[str, float]
    cpu: dict[str, float]
    log_lines: dict[str, int]
    at: float


class Work(msgspec.Struct, kw_only=True):
    """One operation's share of the counters' difference over a measurement."""

    kind: str
    concurrency: int
    count: int
    statements: dict[str, float]
    rows: dict[str, float]
    messages: dict[str, float]
    cpu_ms: dict[str, float]
    log_lines: dict[str, float]
    http_calls: float


class Bench:
    def __init__(self, pg: PrivatePostgres, rabbit: PrivateRabbit, processes: dict[str, Child]):
        self.pg = pg
        self.rabbit = rabbit
        self.processes = processes
        self.observer: asyncpg.Connection | None = None
        self.idle_rates: dict[str, float] = {}

    def cpu(self) -> dict[str, float]:
        own = {name: child.cpu_seconds() for name, child in self.processes.items()}
        return {**own, "postgres": self.pg.cpu_seconds(), "rabbitmq": self.rabbit.cpu_seconds()}

    async def measure_idle(self) -> None:
        before, started = self.cpu(), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)  # measuring what the processes do while idle
        elapsed = time.monotonic() - started
        self.idle_rates = {k: (v - before[k]) / elapsed for k, v in self.cpu().items()}

    async def totals(self) -> Totals:
        assert self.observer is not None
        rows = await self.observer.fetch(
            "SELECT query, calls, rows FROM pg_stat_statements"
            " WHERE userid = 'postgres'::regrole AND dbid = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"
        )
        statements: Counter[str] = Counter()
        written: Counter[str] = Counter()
        for row in rows:
            kind = _kind(row["query"])
            statements[kind] += row["calls"]
            if _VERB.match(row["query"]):
                written[kind] += row["rows"]
        return Totals(
            statements=statements,
            rows=written,
            messages=await self.rabbit.message_totals(),
            cpu=self.cpu(),
            log_lines={name: _lines(child.log_path) for name, child in self.processes.items()},
            at=time.monotonic(),
        )

    async def operations_done(self, ids: list[str]) -> bool:
        assert self.observer is not None
        done = await self.observer.fetchval(
            "SELECT count(*) FROM operations WHERE id = ANY($1) AND done = 1", ids
        )
        # Done too: every outbox row sent and every event numbered into the event log.
        left = await self.observer.fetchval(
            "SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL)"
            " + (SELECT count(*) FROM event_queue)"
        )
        return bool(done == len(ids) and left == 0)


def share(
    kind: str,
    concurrency: int,
    count: int,
    calls: int,
    before: Totals,
    after: Totals,
    idle: dict[str, float],
) -> Work:
    """The difference of the counters over one measurement of `count` operations that made
    `calls` HTTP calls, per operation."""
    elapsed = after.at - before.at
    return Work(
        kind=kind,
        concurrency=concurrency,
        count=count,
        statements=_per_operation(after.statements - before.statements, count),
        rows=_per_operation(after.rows - before.rows, count),
        messages={k: (v - before.messages.get(k, 0.0)) / count for k, v in after.messages.items()},
        cpu_ms={
            k: max(0.0, v - before.cpu[k] - idle.get(k, 0.0) * elapsed) * 1000 / count
            for k, v in after.cpu.items()
        },
        log_lines={k: (v - before.log_lines[k]) / count for k, v in after.log_lines.items()},
        http_calls=calls / count,
    )


def _per_operation(counts: Counter[str], count: int) -> dict[str, float]:
    return {key: n / count for key, n in sorted(counts.items())}


def _kind(query: str) -> str:
    """What a statement does to which table: `INSERT outbox`, `SELECT images`, `COMMIT`."""
    words = query.split()
    first = words[0].upper() if words else "?"
    if verb := _VERB.match(query):
        return f"{verb.group(1).split()[0].upper()} {verb.group(2)}"
    if first == "SELECT" and " FROM " in query.upper():
        table = query.upper().split(" FROM ", 1)[1].split()[0].strip("(").lower()
        return f"SELECT {table}"
    return first


def _lines(path: Path) -> int:
    with path.open("rb") as log:
        return sum(1 for _ in log)


class Operations:
    """Makes the operations counted: creates from a READY image (no bytes move), updates of
    the images the last creates made, small imports of distinct 256 KiB qcow2 images."""

    def __init__(self, http: Http, source_url: str) -> None:
        self.http = http
        self.source_url = source_url
        self.seed = ""
        self.created: list[str] = []
        self.calls = 0  # HTTP calls made

    async def make(self, kind: str, count: int, concurrency: int) -> list[str]:
        """`count` operations of `kind`, `concurrency` at a time; their operation ids."""
        salt = secrets.token_hex(4)
        made: list[dict[str, str]] = [{} for _ in range(count)]
        call = {"create": self._create, "update": self._update, "small import": self._import}[kind]

        async def one(index: int) -> None:
            self.calls += 1
            made[index] = msgspec.json.decode(await call(index, salt))

        posted = await closed_loop(one, count=count, concurrency=concurrency, deadline=300)
        if posted.error_samples:
            raise RuntimeError(f"{kind}: {posted.error_samples[:2]}")
        if kind == "create":
            self.created = [operation["metadata"]["imageId"] for operation in made]
        return [operation["id"] for operation in made]

    async def _create(self, index: int, salt: str) -> bytes:
        body = {"folderId": FOLDER, "name": f"c-{salt}-{index}", "imageId": self.seed}
        return await self.http.post(IMAGES, msgspec.json.encode(body))

    async def _update(self, index: int, salt: str) -> bytes:
        body = msgspec.json.encode({"updateMask": "description", "description": salt})
        return await self.http.request("PATCH", f"{IMAGES}/{self.created[index]}", body)

    async def _import(self, index: int, salt: str) -> bytes:
        uri = f"{self.source_url}/qcow2/{SMALL}/{salt}/{index}.qcow2"
        body = msgspec.json.encode({"folderId": FOLDER, "name": f"i-{salt}-{index}", "uri": uri})
        return await self.http.post(IMAGES, body)


async def count_work(
    workdir: Path, count: int, concurrency: int, log: Callable[[str], None]
) -> list[Work]:
    async with private_postgres() as pg, private_rabbit() as rabbit, children() as started:
        admin = await asyncpg.connect(pg.url())
        try:
            await admin.execute("CREATE DATABASE kiln")
            await admin.execute("CREATE ROLE observer SUPERUSER LOGIN")
        finally:
            await admin.close()
        kiln_db = await asyncpg.connect(pg.url("kiln"))
        try:
            await kiln_db.execute("CREATE EXTENSION pg_stat_statements")
        finally:
            await kiln_db.close()
        source = await image_source(started, workdir, str(SMALL))
        kiln = Kiln(workdir, started, database_url=pg.url("kiln"), broker_url=rabbit.url)
        processes = {"gateway": await kiln.gateway(), "worker": await kiln.worker()}
        bench = Bench(pg, rabbit, processes)
        bench.observer = await asyncpg.connect(pg.url("kiln", user="observer"))
        try:
            async with Http(processes["gateway"].url, kiln.headers, concurrency) as http:
                operations = Operations(http, source.url)
                return await _measure_all(bench, operations, count, concurrency, log)
        finally:
            await bench.observer.close()


async def _measure_all(
    bench: Bench, operations: Operations, count: int, concurrency: int, log: Callable[[str], None]
) -> list[Work]:
    async def done(ids: list[str]) -> None:
        await wait_until(lambda: bench.operations_done(ids), 300, f"{len(ids)} operations done")

    seed = await operations.make("small import", 1, 1)
    await done(seed)
    operations.seed = await bench.observer.fetchval(  # type: ignore[union-attr]
        "SELECT resource_id FROM operations WHERE id = $1", seed[0]
    )
    for kind in KINDS:  # warm-up: connections, prepared statements, the import pipeline
        await done(await operations.make(kind, 2 * concurrency, concurrency))
    works = []
    for at_once in (1, concurrency):
        for kind in KINDS:
            await bench.measure_idle()
            before, calls = await bench.totals(), operations.calls
            await done(await operations.make(kind, count, at_once))
            after, calls = await bench.totals(), operations.calls - calls
            work = share(kind, at_once, count, calls, before, after, bench.idle_rates)
            log(f"work: {kind} ×{at_once}: {sum(work.cpu_ms.values()):.2f} ms CPU per operation")
            works.append(work)
    return works


def render(works: list[Work], command: str) -> str:
    """A Markdown table: one column per measurement, one row per counter."""
    columns = [f"{w.kind} ×{w.concurrency}" for w in works]
    lines = [
        "| per operation | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(works),
    ]

    def row(label: str, values: list[float], digits: int = 2) -> None:
        lines.append(f"| {label} | " + " | ".join(f"{v:.{digits}f}" for v in values) + " |")

    def section(label: str, pick: Callable[[Work], dict[str, float]]) -> None:
        keys = sorted({key for w in works for key in pick(w)})
        row(f"**{label}**", [sum(pick(w).values()) for w in works])
        for key in keys:
            row(f"&nbsp;&nbsp;{key}", [pick(w).get(key, 0.0) for w in works])

    row("HTTP calls", [w.http_calls for w in works], 0)
    section("SQL statements", lambda w: w.statements)
    section("rows written", lambda w: w.rows)
    for name in (
        "received",
        "received_confirm",
        "confirmed",
        "routed",
        "delivered_consume_manual_ack",
        "acknowledged",
    ):
        row(f"AMQP {name.replace('_', ' ')}", [w.messages.get(name, 0.0) for w in works])
    section("log lines", lambda w: w.log_lines)
    section("CPU ms", lambda w: w.cpu_ms)
    count = works[0].count if works else 0
    return (
        f"`{command}`: {count} operations per column, one after another (×1) or"
        f" {works[-1].concurrency if works else 0} at a time.\n\n" + "\n".join(lines) + "\n"
    )
