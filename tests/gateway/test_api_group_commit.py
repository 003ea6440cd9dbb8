"""Group commit of creates and updates (api/group_commit.py): concurrent requests share
transactions, and each one is answered exactly as if it had been alone: its own operation,
its own error, a repeated Idempotency-Key answered with the first operation, a second
update of one image applied after the first."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.keys import CREATES, UPDATES
from store import event_log
from support.auth import bearer
from tests.gateway.conftest import FOLDER, MISSING_IMAGE, Api, FinishReady, Reply


@pytest.fixture
def batch_sizes(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The size of every batch written: the tests must see requests really share one."""
    sizes: list[int] = []
    for key in (CREATES, UPDATES):
        commit = api.client.app[key]
        write = commit._write_batch

        async def recorded(conn: Any, batch: list[Any], write: Any = write) -> Any:
            sizes.append(len(batch))
            return await write(conn, batch)

        monkeypatch.setattr(commit, "_write_batch", recorded)
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
    await event_log.sequence(api.db)
    async with api.db.transaction() as conn:
        created = (await event_log.read_after(conn, FOLDER, 0, 100)).entries
    assert [json.loads(e.body)["sequence"] for e in created] == ["1"] * 10  # written again: 1


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


async def ids_of(api: Api, count: int) -> list[str]:
    return [await api.new_image(name=f"img-{n}") for n in range(count)]


async def test_concurrent_updates_share_transactions_and_each_is_applied(
    api: Api, batch_sizes: list[int]
) -> None:
    image_ids = await ids_of(api, 20)
    batch_sizes.clear()
    replies = await at_once(
        *(api.update(image_id, {"description": f"d{n}"}) for n, image_id in enumerate(image_ids))
    )

    assert max(batch_sizes) > 1 and sum(batch_sizes) == 20
    assert all(reply.status == 200 and reply.json["done"] for reply in replies)
    assert [reply.json["response"]["description"] for reply in replies] == [
        f"d{n}" for n in range(20)
    ]
    for n, image_id in enumerate(image_ids):
        assert (await api.image(image_id))["description"] == f"d{n}"
    await event_log.sequence(api.db)
    async with api.db.transaction() as conn:
        page = await event_log.read_after(conn, FOLDER, 20, 100)  # after the 20 created
    updated = [e for e in page.entries if e.type == "compute.image.updated"]
    assert len(page.entries) == 40 and len(updated) == 20


async def test_updates_of_one_image_apply_one_after_another(
    api: Api, batch_sizes: list[int]
) -> None:
    (image_id,) = await ids_of(api, 1)
    replies = await at_once(*(api.update(image_id, {"labels": {"n": str(n)}}) for n in range(6)))

    assert all(reply.status == 200 for reply in replies), [r.body for r in replies]
    await event_log.sequence(api.db)
    async with api.db.transaction() as conn:
        page = await event_log.read_after(conn, FOLDER, 0, 100)
    sequences = [json.loads(e.body)["sequence"] for e in page.entries]
    assert sequences == [str(n) for n in range(1, 14)]  # created, then (updated, done) 6 times
    final = (await api.image(image_id))["labels"]
    assert final in [reply.json["response"]["labels"] for reply in replies]


async def test_a_refused_update_fails_only_its_own_request(
    api: Api, batch_sizes: list[int], finish_ready: FinishReady
) -> None:
    image_ids = await ids_of(api, 6)
    await finish_ready(image_ids[5], size=8 * 1024**3)
    batch_sizes.clear()
    replies = await at_once(
        api.update(image_ids[0], {"updateMask": "name", "name": "img-1"}),  # taken
        api.update(MISSING_IMAGE, {"description": "x"}),
        api.call(
            "PATCH",
            f"/compute/v1/images/{image_ids[2]}",
            json_body={"description": "x"},
            headers=bearer("stranger"),
        ),
        api.update(image_ids[5], {"updateMask": "minDiskSize", "minDiskSize": str(1024**3)}),
        api.update(image_ids[3], {"description": "fine"}),
        api.update(image_ids[4], {"description": "fine too"}),
    )

    assert [reply.status for reply in replies] == [409, 404, 404, 400, 200, 200]
    assert "img-1" in replies[0].message
    assert (await api.image(image_ids[0]))["name"] == "img-0"


async def test_a_key_repeated_on_concurrent_updates_answers_one_operation(api: Api) -> None:
    image_ids = await ids_of(api, 3)
    key = {"Idempotency-Key": "update-key"}
    body = {"description": "once"}
    replies = await at_once(
        *(
            api.call("PATCH", f"/compute/v1/images/{image_ids[0]}", json_body=body, headers=key)
            for _ in range(5)
        ),
        *(api.update(image_id, {"description": "other"}) for image_id in image_ids[1:]),
    )

    assert all(reply.status == 200 for reply in replies), [r.body for r in replies]
    assert len({reply.json["id"] for reply in replies[:5]}) == 1
    operations = (await api.operations(image_ids[0])).json["operations"]
    assert len(operations) == 2  # the create and one update
