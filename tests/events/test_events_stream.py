"""`GET /kiln/v1/events` on each store backend: replay after a dropped connection while events
keep coming, filters, errors in the contract's shape, heartbeats, the client's reconnects."""

import asyncio
import json
from typing import Any

import pytest

from bus.base import Delivery
from contracts.errors import Code
from contracts.names import EVENTS_EXCHANGE
from gateway.events import sse_stream
from kiln.client import KilnClient, KilnError
from runtime.clock import now_us
from store import event_log
from store.db import Connection
from support.auth import token

from .conftest import CuttingProxy, Gateway, cloud_event, sse

TOTAL = 30

EXPIRED_US = event_log.RETENTION_US + event_log.CLOCK_SKEW_US + 1_000_000


async def produce(gateway: Gateway, folder: str, count: int, pause: float = 0.01) -> list[str]:
    """Create `count` images one after the other; their ids in order."""
    ids = []
    for n in range(count):
        ids.append((await gateway.create(folder, f"img-{n}"))["metadata"]["imageId"])
        await asyncio.sleep(pause)
    return ids


async def error_of(gateway: Gateway, **query: str) -> dict[str, Any]:
    headers = {"Last-Event-ID": query.pop("header")} if "header" in query else None
    url = f"{gateway.url}/kiln/v1/events"
    async with gateway.session.get(url, params=query, headers=headers) as reply:
        assert reply.status == 400
        assert reply.content_type == "application/json"
        body = dict(await reply.json())
    assert set(body) == {"code", "message", "details"}
    return body


async def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(
    gateway: Gateway, folder: str
) -> None:
    published: list[bytes] = []

    async def on_event(delivery: Delivery) -> None:
        published.append(delivery.body)

    tap = await gateway.bus.subscribe(EVENTS_EXCHANGE, [f"*.*.*.{folder}"], on_event)
    received: list[tuple[int, bytes]] = []
    async with sse(gateway.session, gateway.url, folderId=folder) as stream:
        start = await stream.next()
        assert start.position == 0 and start.data is None  # a new folder: starts at 0
        producing = asyncio.create_task(produce(gateway, folder, TOTAL))
        while len(received) < 8:
            frame = await stream.event()
            assert frame.position is not None and frame.data is not None
            received.append((frame.position, frame.data))
    await asyncio.sleep(0.1)  # disconnected while events keep coming
    last = str(received[-1][0])
    async with sse(gateway.session, gateway.url, {"Last-Event-ID": last}, folderId=folder) as s:
        while len(received) < TOTAL:
            frame = await s.event()
            assert frame.position is not None and frame.data is not None
            received.append((frame.position, frame.data))
    image_ids = await producing
    await tap.stop()

    assert [position for position, _ in received] == list(range(1, TOTAL + 1))
    assert [json.loads(data)["subject"] for _, data in received] == image_ids
    assert [data for _, data in received] == published  # the very bytes RabbitMQ carries


async def test_query_parameter_resume_and_type_filter(gateway: Gateway, folder: str) -> None:
    image_id = (await gateway.create(folder))["metadata"]["imageId"]
    await gateway.update(image_id, "one")
    await gateway.update(image_id, "two")  # positions: 1 created, 2-3 and 4-5 updated+done

    query = {"folderId": folder, "lastEventId": "1", "type": "operation.done"}
    async with sse(gateway.session, gateway.url, **query) as stream:
        frames = [await stream.next() for _ in range(3)]
    assert frames[0].position == 1 and frames[0].data is None
    assert [(f.position, f.type) for f in frames[1:]] == [
        (3, "compute.operation.done"),
        (5, "compute.operation.done"),
    ]

    query = {"folderId": folder, "lastEventId": "0", "type": "created,updated"}
    async with sse(gateway.session, gateway.url, **query) as stream:
        frames = [await stream.next() for _ in range(5)]
    events = [(f.position, f.type) for f in frames if f.data is not None]
    assert events == [
        (1, "compute.image.created"),
        (2, "compute.image.updated"),
        (4, "compute.image.updated"),
    ]
    assert frames[-1].position == 5 and frames[-1].data is None  # skipped, but passed


async def test_live_events_wake_the_stream(
    gateway: Gateway, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse_stream, "POLL_SECONDS", 30.0)  # only a wake-up can be in time
    async with sse(gateway.session, gateway.url, folderId=folder) as stream:
        assert (await stream.next()).position == 0
        await gateway.create(folder)
        frame = await stream.event(timeout=5)
    assert (frame.position, frame.type) == (1, "compute.image.created")
    assert cloud_event(frame)["folderid"] == folder


async def test_bad_requests_answer_400_in_the_contract_shape(gateway: Gateway, folder: str) -> None:
    missing = await error_of(gateway)
    assert missing["code"] == Code.INVALID_ARGUMENT and "folderId" in missing["message"]
    assert (await error_of(gateway, folderId=folder, type="nope"))["code"] == 3
    assert (await error_of(gateway, folderId=folder, lastEventId="-1"))["code"] == 3
    assert (await error_of(gateway, folderId=folder, header="x"))["code"] == 3
    assert (await error_of(gateway, folderId=folder, color="red"))["code"] == 3
    beyond = await error_of(gateway, folderId=folder, lastEventId="7")
    assert beyond["code"] == Code.OUT_OF_RANGE and "no event 7" in beyond["message"]


async def test_a_position_older_than_retention_is_refused(gateway: Gateway, folder: str) -> None:
    old = now_us() - EXPIRED_US
    async with gateway.db.transaction() as conn:
        for _ in range(3):
            await event_log.append(conn, folder, "compute.image.created", b"{}", old)
    await event_log.sequence(gateway.db)
    await gateway.create(folder)
    assert await event_log.prune_expired(gateway.db) == 3

    for query in ({"lastEventId": "1"}, {"header": "0"}):
        refused = await error_of(gateway, folderId=folder, **query)
        assert refused["code"] == Code.OUT_OF_RANGE and "retention" in refused["message"]
    async with sse(gateway.session, gateway.url, {"Last-Event-ID": "3"}, folderId=folder) as s:
        assert (await s.event()).position == 4  # right after the pruned ones: fine


async def test_pruning_under_a_running_stream_ends_it_with_an_error_event(
    gateway: Gateway, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = now_us() - EXPIRED_US
    async with gateway.db.transaction() as conn:
        for _ in range(5):
            await event_log.append(conn, folder, "compute.image.created", b"{}", old)
    await event_log.sequence(gateway.db)
    monkeypatch.setattr(sse_stream, "BATCH", 2)
    reads = 0
    read_after = event_log.read_after

    async def pruned_meanwhile(conn: Connection, *args: Any) -> event_log.Page:
        nonlocal reads
        reads += 1
        if reads == 2:  # the stream's second batch: everything old is gone by then
            await conn.execute("DELETE FROM event_log WHERE created_at <= ?", old)
        return await read_after(conn, *args)

    monkeypatch.setattr(event_log, "read_after", pruned_meanwhile)
    async with sse(gateway.session, gateway.url, folderId=folder, lastEventId="0") as stream:
        frames = [await stream.next() for _ in range(4)]
        assert await stream.ended()
    assert [f.position for f in frames[:3]] == [0, 1, 2]
    assert frames[3].type == "kiln.error" and frames[3].data is not None
    error = json.loads(frames[3].data)
    assert error["code"] == Code.OUT_OF_RANGE and "after position 2" in error["message"]


async def test_heartbeats_keep_an_idle_stream_alive(
    gateway: Gateway, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse_stream, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(sse_stream, "POLL_SECONDS", 0.05)
    async with sse(gateway.session, gateway.url, folderId=folder) as stream:
        await stream.next()
        while stream.comments < 2:
            assert await asyncio.wait_for(stream.response.content.readany(), 2)
            stream.comments += 1


async def test_client_events_resume_across_cut_connections(
    gateway: Gateway, proxy: CuttingProxy, folder: str
) -> None:
    producing = asyncio.create_task(produce(gateway, folder, TOTAL, pause=0.02))
    positions, subjects = [], []
    async with KilnClient(proxy.url, token(), backoff=0.01) as client:
        async for item in client.events(folder, last_event_id=0):
            positions.append(item.position)
            subjects.append(item.event.subject)
            if item.position in (5, 17, 18):
                proxy.cut()
            if len(positions) == TOTAL:
                break
    assert positions == list(range(1, TOTAL + 1))
    assert subjects == await producing


async def test_client_events_raise_a_refusal(gateway: Gateway, folder: str) -> None:
    async with KilnClient(gateway.url, token()) as client:
        with pytest.raises(KilnError) as refused:
            await anext(aiter(client.events(folder, type="bogus")))
    assert refused.value.code == Code.INVALID_ARGUMENT and refused.value.http_status == 400
