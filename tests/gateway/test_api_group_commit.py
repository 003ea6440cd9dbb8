"""Group commit of creates (gateway/create_batches.py): concurrent creates share transactions,
and each one is answered exactly as if it had been alone: its own operation, its own error,
a repeated Idempotency-Key answered with the first operation."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import create_batches
from store import event_log
from support.auth import bearer
from tests.gateway.conftest import FOLDER, Api, FinishReady, Reply


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The size of every batch written: the tests must see creates really share one."""
    sizes: list[int] = []
    write_batch = create_batches._write_batch

    async def recorded(conn: Any, batch: list[Any]) -> Any:
        sizes.append(len(batch))
        return await write_batch(conn, batch)

    monkeypatch.setattr(create_batches, "_write_batch", recorded)
    yield sizes


async def at_once(*calls: Any) -> list[Reply]:
    return list(await asyncio.gather(*calls))


async def test_concurrent_creates_share_transactions_and_each_gets_its_own_image(
    api: Api, batch_sizes: list[int]
) -> None:
    replies = await at_once(*(api.create(name=f"img-{n}") for n in range(40)))

    assert all(reply.status == 200 for reply in replies), [r.body for r in replies]
    assert max(batch_sizes) > 1 and sum(batch_sizes) == 40
    image_ids = [reply.json["metadata"]["imageId"] for reply in replies]
    assert len(set(image_ids)) == 40 and len({reply.json["id"] for reply in replies}) == 40
    for n, image_id in enumerate(image_ids):
        image = await api.image(image_id)
        assert (image["name"], image["status"]) == (f"img-{n}", "CREATING")
    await event_log.sequence(api.db)
    async with api.db.transaction() as conn:
        page = await event_log.read_after(conn, FOLDER, 0, 100)
    assert [entry.position for entry in page.entries] == list(range(1, 41))
    assert {entry.type for entry in page.entries} == {"compute.image.created"}


async def test_a_taken_name_fails_only_its_own_create(api: Api, batch_sizes: list[int]) -> None:
    names = [f"img-{n}" for n in range(10)] + ["img-3"]
    replies = await at_once(*(api.create(name=name) for name in names))

    assert max(batch_sizes) > 1
    statuses = sorted(reply.status for reply in replies)
    assert statuses == [200] * 10 + [409], [r.body for r in replies]
    refused = next(reply for reply in replies if reply.status == 409)
    assert refused.code == 6 and "img-3" in refused.message
    listed = (await api.list(pageSize=100)).json["images"]
    assert sorted(image["name"] for image in listed) == sorted(set(names))


async def test_a_key_repeated_within_one_batch_answers_the_first_operation(
    api: Api, batch_sizes: list[int]
) -> None:
    key = {"Idempotency-Key": "batch-key"}
    repeats = [api.create(headers=key, name="keyed") for _ in range(8)]
    others = [api.create(name=f"other-{n}") for n in range(8)]
    replies = await at_once(*repeats, *others)

    assert max(batch_sizes) > 1
    assert all(reply.status == 200 for reply in replies), [r.body for r in replies]
    assert len({reply.json["id"] for reply in replies[:8]}) == 1
    listed = (await api.list(pageSize=100)).json["images"]
    assert sorted(image["name"] for image in listed) == sorted(
        ["keyed", *(f"other-{n}" for n in range(8))]
    )


async def test_a_key_reused_for_another_request_fails_only_that_request(api: Api) -> None:
    first = await api.create(headers={"Idempotency-Key": "k1"}, name="first")
    replies = await at_once(
        api.create(headers={"Idempotency-Key": "k1"}, name="different"),
        api.create(headers={"Idempotency-Key": "k1"}, name="first"),
        *(api.create(name=f"img-{n}") for n in range(6)),
    )

    assert replies[0].status == 409 and "Idempotency-Key" in replies[0].message
    assert replies[1].status == 200 and replies[1].json["id"] == first.json["id"]
    assert all(reply.status == 200 for reply in replies[2:])


async def test_refused_checks_answer_their_own_request(
    api: Api, batch_sizes: list[int], finish_ready: FinishReady
) -> None:
    ready = await api.new_image(name="ready")
    await finish_ready(ready)
    creating = await api.new_image(name="creating")
    batch_sizes.clear()

    replies = await at_once(
        api.create(headers=bearer("stranger"), name="not-mine"),
        api.create(uri=None, imageId=creating, name="from-creating"),
        *(api.create(uri=None, imageId=ready, name=f"copy-{n}") for n in range(6)),
    )

    assert max(batch_sizes) > 1
    assert replies[0].status == 403
    assert replies[1].status == 400 and replies[1].code == 9 and "not READY" in replies[1].message
    assert all(reply.status == 200 for reply in replies[2:]), [r.body for r in replies]
