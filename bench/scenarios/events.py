"""Events: commit → subscriber latency at `event_rate` events/s. PATCH updates (one
`compute.image.updated` event each) are sent on a fixed schedule at that rate, spread over 100
seeded READY images, to a gateway; an aio-pika subscriber on `kiln.events` (its own exclusive
queue, as in the README) takes each event's latency as receipt time − the CloudEvent's `time`
(set in the transaction that commits the change). Also recorded: PATCH sent → event received.
Floor: aio-pika publish → consume latency at the same rate (bench/floors/events.py)."""

import asyncio
import contextlib
import time
from datetime import datetime

import aio_pika
import msgspec

from bench.floors.events import publish_consume
from bench.load import Http, LoadResult, paced
from bench.processes import Kiln, children, postgres_database, py_spy, rabbit_vhost
from bench.results import ScenarioResult, compare, target
from bench.scenarios import Context
from bench.scenarios.common import IMAGES, fmt
from bench.seed import seed_postgres
from bench.stats import percentile

FOLDER = "bench-events"
IMAGES_UPDATED = 100
CONNECTIONS = 64


class EventImage(msgspec.Struct):
    description: str = ""


class CloudEvent(msgspec.Struct):
    time: str
    type: str
    data: EventImage | None = None


class KilnEvents(msgspec.Struct, kw_only=True):
    commit_to_receipt: list[float]  # ms
    send_to_receipt: list[float]  # ms
    requests: LoadResult
    received: int


async def _kiln_run(ctx: Context, http: Http, amqp: str, ids: list[str], number: int) -> KilnEvents:
    p = ctx.profile
    decoder = msgspec.json.Decoder(CloudEvent)
    sent_at: dict[str, float] = {}
    commit: list[float] = []
    send: list[float] = []
    everything = asyncio.Event()
    expected = p.event_count + 1
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        exchange = await channel.declare_exchange(
            "kiln.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, f"compute.image.updated.{FOLDER}")

        async def received(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            now = time.time()
            event = decoder.decode(message.body)
            commit.append((now - datetime.fromisoformat(event.time).timestamp()) * 1000)
            marker = event.data.description if event.data else ""
            if marker in sent_at:
                send.append((now - sent_at[marker]) * 1000)
            await message.ack()
            if len(commit) >= expected:
                everything.set()

        await queue.consume(received)

        async def update(index: int) -> None:
            marker = f"run{number}-{index}"
            body = msgspec.json.encode({"updateMask": "description", "description": marker})
            sent_at[marker] = time.time()
            await http.request("PATCH", f"{IMAGES}/{ids[index % len(ids)]}", body)

        requests = await paced(
            update, rate=p.event_rate, count=p.event_count, deadline=p.load_deadline
        )
        expected = requests.ok
        if len(commit) < expected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(everything.wait(), 10.0)
    finally:
        await connection.close()
    return KilnEvents(
        commit_to_receipt=commit, send_to_receipt=send, requests=requests, received=len(commit)
    )


async def run(ctx: Context) -> ScenarioResult:
    p = ctx.profile
    result = ScenarioResult(name="events", title=f"Events at {p.event_rate} events/s")
    floors: list[LoadResult] = []
    kilns: list[KilnEvents] = []
    async with postgres_database() as dsn, rabbit_vhost() as amqp, children() as started:
        kiln = Kiln(ctx.workdir, started, database_url=dsn, broker_url=amqp)
        gateway = await kiln.gateway()
        seed = await seed_postgres(dsn, FOLDER, IMAGES_UPDATED)
        ids = [seed.id(i) for i in range(IMAGES_UPDATED)]
        async with Http(gateway.url, kiln.headers, CONNECTIONS) as http:
            for number in range(p.runs):
                floor = await publish_consume(
                    amqp, rate=p.event_rate, count=p.event_count, deadline=p.load_deadline
                )
                floors.append(floor)
                ctx.log(
                    f"events run {number + 1} floor: p50 {fmt(floor.p(50), 2)} ms,"
                    f" p99 {fmt(floor.p(99), 2)} ms, {floor.ok}/{floor.sent} received"
                )
                spied = ctx.profile_path("gateway-events") if number == 0 else None
                async with py_spy(gateway, spied):
                    k = await _kiln_run(ctx, http, amqp, ids, number)
                kilns.append(k)
                ctx.log(
                    f"events run {number + 1} Kiln: commit→receipt p50"
                    f" {fmt(percentile(k.commit_to_receipt, 50), 2)} ms,"
                    f" p99 {fmt(percentile(k.commit_to_receipt, 99), 2)} ms;"
                    f" {k.received}/{k.requests.ok} events for {k.requests.sent} PATCHes at"
                    f" {fmt(k.requests.ok / k.requests.elapsed)}/s,"
                    f" PATCH p99 {fmt(k.requests.p(99), 2)} ms, errors {k.requests.errors}"
                    + (f" {k.requests.error_samples[:1]}" if k.requests.error_samples else "")
                )
    commit_p99 = None
    for q in (50, 99):
        commit_p99 = compare(
            f"event latency p{q}",
            "ms",
            "latency",
            [percentile(k.commit_to_receipt, q) for k in kilns],
            [f.p(q) for f in floors],
            note="Kiln: CloudEvent `time` (in the committing transaction) → subscriber;"
            " floor: aio-pika publish → consume",
        )
        result.comparisons.append(commit_p99)
    assert commit_p99 is not None
    commit_p99.limit = 20.0
    result.comparisons += [
        compare(
            f"PATCH sent → event received p{q}",
            "ms",
            "latency",
            [percentile(k.send_to_receipt, q) for k in kilns],
        )
        for q in (50, 99)
    ]
    delivered = compare(
        "events delivered/s",
        "events/s",
        "throughput",
        [k.received / k.requests.elapsed for k in kilns],
        [f.ok / f.elapsed for f in floors],
        limit=0.95 * p.event_rate,
    )
    result.comparisons.append(delivered)
    p99, rate = commit_p99.kiln.median, delivered.kiln.median
    lost = sum(k.requests.ok - k.received for k in kilns)
    result.targets.append(
        target(
            f"events: p99 ≤ 20 ms at {p.event_rate} events/s",
            p99 <= 20 and rate >= 0.95 * p.event_rate,
            f"p99 {fmt(p99, 2)} ms at {fmt(rate)} events/s delivered",
        )
    )
    result.notes.append(
        f"{p.event_count:,} PATCH updates per run at {p.event_rate}/s over {IMAGES_UPDATED}"
        f" images, {CONNECTIONS} connections at most; events not received within 10 s: {lost}"
    )
    return result
