"""ImageService.Delete and ImageService.ListOperations."""

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from contracts.enums import ImageStatus
from contracts.names import DELETE_QUEUE
from store import images, operations
from store.db import Database
from tests.gateway.conftest import MISSING_IMAGE, Api, FinishReady, cancel_notices, take_lease

DELETE_METADATA = "type.googleapis.com/yandex.cloud.compute.v1.DeleteImageMetadata"
BINDING = {"roleId": "viewer", "subject": {"id": "u1", "type": "userAccount"}}


class _Clock:
    """Stands in for `time` in contracts.ids: `time_ns` as given by `ticks`."""

    def __init__(self, ticks: Iterator[int]) -> None:
        self._ticks = ticks

    def time_ns(self) -> int:
        return next(self._ticks)


@pytest.fixture
def ids_one_ms_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new id is one millisecond after the previous one, so that "newest first"
    does not depend on how fast the test runs."""
    start = 1_900_000_000_000 * 1_000_000
    monkeypatch.setattr("contracts.ids.time", _Clock(itertools.count(start, 1_000_000)))


async def test_delete_answers_a_running_operation_and_the_image_is_deleting(
    api: Api, finish_ready: FinishReady, bus: Any
) -> None:
    image_id = await api.new_image()
    await finish_ready(image_id)
    received = []

    async def handler(delivery: Any) -> None:
        received.append(delivery)

    subscription = await bus.consume(DELETE_QUEUE, handler, prefetch=10)
    try:
        reply = await api.delete(image_id)
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0)  # let the queue feed the handler
    finally:
        await subscription.stop()

    assert reply.status == 200, reply.body
    op = reply.json
    assert op["done"] is False and "response" not in op and "error" not in op
    assert op["description"] == "Delete image"
    assert op["metadata"] == {"@type": DELETE_METADATA, "imageId": image_id}
    assert (await api.image(image_id))["status"] == "DELETING"
    assert (await api.operation(op["id"])).json == op
    assert len(received) == 1 and image_id.encode() in received[0].body


async def test_deleting_twice_is_a_failed_precondition(api: Api) -> None:
    image_id = await api.new_image()
    assert (await api.delete(image_id)).status == 200

    again = await api.delete(image_id)

    assert (again.status, again.code) == (400, 9), again.body


async def test_delete_with_the_same_idempotency_key_replays(api: Api) -> None:
    image_id = await api.new_image()
    headers = {"Idempotency-Key": "del-1"}

    first = await api.delete(image_id, headers=headers)
    again = await api.delete(image_id, headers=headers)

    assert again.status == 200, again.body
    assert again.json["id"] == first.json["id"]


async def test_delete_while_creating_marks_the_create_for_cancel(api: Api, db: Database) -> None:
    create = (await api.create()).json
    image_id = create["metadata"]["imageId"]

    assert (await api.delete(image_id)).status == 200

    async with db.transaction() as conn:
        record = await operations.get(conn, create["id"])
    assert record is not None and record.cancel_requested and not record.done
    assert (await api.image(image_id))["status"] == "DELETING"


async def test_delete_while_importing_notifies_the_workers(api: Api, db: Database) -> None:
    importing, waiting = (await api.create()).json, (await api.create()).json
    await take_lease(db, importing["id"])

    for create in (importing, waiting):
        assert (await api.delete(create["metadata"]["imageId"])).status == 200

    assert await cancel_notices(db) == [importing["id"]]  # no worker holds the other one


async def test_an_image_in_error_can_be_deleted(api: Api, db: Database) -> None:
    image_id = await api.new_image()
    async with db.transaction() as conn:
        record = await images.get(conn, image_id)
        assert record is not None
        record.status = ImageStatus.ERROR
        await images.replace_many(conn, [record])

    reply = await api.delete(image_id)

    assert reply.status == 200, reply.body
    assert (await api.image(image_id))["status"] == "DELETING"


async def test_delete_of_an_unknown_image_is_404(api: Api) -> None:
    reply = await api.delete(MISSING_IMAGE)
    overlong = await api.delete("i" * 51)

    assert (reply.status, reply.code) == (404, 5), reply.body
    assert (overlong.status, overlong.code) == (400, 3), overlong.body


async def test_delete_refuses_query_fields(api: Api) -> None:
    image_id = await api.new_image()

    reply = await api.call("DELETE", f"/compute/v1/images/{image_id}", params={"force": "1"})

    assert (reply.status, reply.code) == (400, 3) and "force" in reply.message
    assert (await api.image(image_id))["status"] == "CREATING"


async def _all_operations(api: Api, image_id: str) -> list[dict[str, Any]]:
    reply = await api.operations(image_id)
    assert reply.status == 200, reply.body
    assert "nextPageToken" not in reply.json
    return list(reply.json["operations"])


async def test_operations_are_listed_newest_first(
    api: Api, finish_ready: FinishReady, ids_one_ms_apart: None
) -> None:
    create = (await api.create()).json
    image_id = create["metadata"]["imageId"]
    await finish_ready(image_id)
    update = (await api.update(image_id, {"updateMask": "name", "name": "n"})).json
    access = (await api.set_bindings(image_id, {"accessBindings": [BINDING]})).json
    delete = (await api.delete(image_id)).json
    other = await api.new_image()
    await api.update(other, {"updateMask": "name", "name": "other"})

    listed = await _all_operations(api, image_id)

    assert [op["id"] for op in listed] == [delete["id"], access["id"], update["id"], create["id"]]
    assert listed[0] == delete and listed[1] == access and listed[2] == update
    assert listed[3]["done"] is True and listed[3]["response"]["id"] == image_id


async def test_operations_pagination(api: Api, ids_one_ms_apart: None) -> None:
    image_id = await api.new_image()
    for n in range(4):
        await api.update(image_id, {"updateMask": "name", "name": f"n{n}"})
    expected = [op["id"] for op in await _all_operations(api, image_id)]

    seen, token, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"pageSize": 2}
        if token:
            params["pageToken"] = token
        reply = await api.operations(image_id, **params)
        assert reply.status == 200, reply.body
        seen += [op["id"] for op in reply.json["operations"]]
        pages += 1
        token = reply.json.get("nextPageToken")
        if not token:
            break

    assert seen == expected and len(expected) == 5 and pages == 3
    first = (await api.operations(image_id, pageSize=2)).json["nextPageToken"]
    other = await api.new_image()
    for bad_image, bad_token in (
        (other, first),
        (image_id, first[:-1] + ("1" if first.endswith("0") else "0")),
        (image_id, "garbage"),
    ):
        reply = await api.operations(bad_image, pageSize=2, pageToken=bad_token)
        assert (reply.status, reply.code) == (400, 3), reply.body
    for size in (1001, -1):
        reply = await api.operations(image_id, pageSize=size)
        assert (reply.status, reply.code) == (400, 3), reply.body


async def test_operations_of_an_unknown_image_is_404(api: Api) -> None:
    reply = await api.operations(MISSING_IMAGE)

    assert (reply.status, reply.code) == (404, 5), reply.body


async def test_operations_stay_readable_after_the_image_is_gone(api: Api) -> None:
    create = (await api.create()).json
    image_id = create["metadata"]["imageId"]
    assert (await api.cancel(create["id"])).status == 200
    assert (await api.get(image_id)).status == 404

    listed = await _all_operations(api, image_id)

    assert [op["id"] for op in listed] == [create["id"]]
    assert listed[0]["error"]["code"] == 1


class _SameMillisecond:
    """`secrets` for contracts.ids whose random tails fall, id after id (zzzzzzzz, yyyyyyyy…),
    as random tails do half of the time."""

    def __init__(self) -> None:
        self._calls = itertools.count()

    def randbelow(self, bound: int) -> int:
        """Eight equal base-36 digits (bound is 36**8), one lower each call."""
        digit = 35 - next(self._calls) % 36
        return digit * (bound - 1) // 35


async def test_operations_begun_in_one_millisecond_are_still_newest_first(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("contracts.ids.time", _Clock(itertools.repeat(1_900_000_000_000_000_000)))
    monkeypatch.setattr("contracts.ids.secrets", _SameMillisecond())
    create = (await api.create()).json
    image_id = create["metadata"]["imageId"]
    update = (await api.update(image_id, {"updateMask": "name", "name": "n"})).json
    delete = (await api.delete(image_id)).json

    listed = await _all_operations(api, image_id)

    assert [op["id"] for op in listed] == [delete["id"], update["id"], create["id"]]
