"""OperationService.Get and Cancel (served on GET and POST)."""

import asyncio

from bus.base import Delivery
from bus.memory import MemoryBus
from contracts.names import CANCELS_EXCHANGE
from contracts.notices import notice_decoder
from runtime.clock import now_us
from store import operations
from store.db import Database
from tests.gateway.conftest import MISSING_OPERATION, Api, FinishReady, cancel_notices, take_lease

IMAGE_TYPE = "type.googleapis.com/yandex.cloud.compute.v1.Image"


async def test_get_operation(api: Api) -> None:
    create = (await api.create()).json

    reply = await api.operation(create["id"])

    assert reply.status == 200 and reply.json == create


async def test_get_unknown_operation_is_404(api: Api) -> None:
    reply = await api.operation(MISSING_OPERATION)
    query = await api.call("GET", f"/operations/{MISSING_OPERATION}", params={"verbose": "1"})

    assert (reply.status, reply.code) == (404, 5), reply.body
    assert MISSING_OPERATION in reply.message
    assert (query.status, query.code) == (400, 3) and "verbose" in query.message


async def test_an_overlong_operation_id_is_refused_naming_it(api: Api) -> None:
    reply = await api.operation("o" * 51)

    assert (reply.status, reply.code) == (400, 3), reply.body
    assert reply.message.startswith("operationId: "), reply.message


async def test_a_finished_create_carries_the_image(api: Api, finish_ready: FinishReady) -> None:
    create = (await api.create(name="done")).json
    await finish_ready(create["metadata"]["imageId"])

    op = (await api.operation(create["id"])).json

    assert op["done"] is True and "error" not in op
    assert op["response"]["@type"] == IMAGE_TYPE
    assert op["response"]["status"] == "READY" and op["response"]["name"] == "done"


async def test_cancel_of_a_create_not_yet_picked_up(api: Api) -> None:
    for method in ("GET", "POST"):
        create = (await api.create()).json
        image_id = create["metadata"]["imageId"]

        reply = await api.cancel(create["id"], method)

        assert reply.status == 200, (method, reply.body)
        op = reply.json
        assert op["id"] == create["id"] and op["done"] is True
        assert op["error"]["code"] == 1 and op["error"]["message"]
        assert "response" not in op
        assert op["metadata"] == create["metadata"]
        assert (await api.operation(create["id"])).json == op
        gone = await api.get(image_id)
        assert (gone.status, gone.code) == (404, 5), (method, gone.body)


async def test_cancel_of_a_create_a_worker_holds_only_asks_for_it(api: Api, db: Database) -> None:
    create = (await api.create()).json
    async with db.transaction() as conn:
        now = now_us()
        assert await operations.take_leases(conn, [create["id"]], "worker-1", now, now + 10**9)

    reply = await api.cancel(create["id"])

    assert reply.status == 200 and reply.json["done"] is False
    async with db.transaction() as conn:
        record = await operations.get(conn, create["id"])
    assert record is not None and record.cancel_requested
    assert (await api.image(create["metadata"]["imageId"]))["status"] == "CREATING"


async def test_cancel_of_a_create_a_worker_holds_notifies_the_workers(
    api: Api, db: Database, bus: MemoryBus
) -> None:
    heard: asyncio.Queue[Delivery] = asyncio.Queue()
    await bus.subscribe(CANCELS_EXCHANGE, [""], heard.put)
    create = (await api.create()).json
    await take_lease(db, create["id"])

    reply = await api.cancel(create["id"], "POST")

    assert reply.status == 200 and reply.json["done"] is False
    delivery = await asyncio.wait_for(heard.get(), 2)
    assert notice_decoder.decode(delivery.body).operation_id == create["id"]
    assert delivery.correlation_id == reply.headers["X-Request-Id"]
    assert await cancel_notices(db) == [create["id"]]  # through the outbox, kept for the relay


async def test_cancel_of_a_create_whose_lease_ran_out_ends_it_and_notifies_the_workers(
    api: Api, db: Database
) -> None:
    create = (await api.create()).json
    await take_lease(db, create["id"], seconds=-1.0)  # its worker may still be importing

    assert (await api.cancel(create["id"])).json["done"] is True
    assert await cancel_notices(db) == [create["id"]]


async def test_cancel_of_a_create_no_worker_holds_notifies_nobody(api: Api, db: Database) -> None:
    create = (await api.create()).json

    assert (await api.cancel(create["id"])).json["done"] is True
    assert await cancel_notices(db) == []


async def test_cancel_of_a_done_operation_returns_it_unchanged(
    api: Api, finish_ready: FinishReady
) -> None:
    cancelled = (await api.create()).json
    first = (await api.cancel(cancelled["id"])).json
    finished = (await api.create()).json
    await finish_ready(finished["metadata"]["imageId"])
    before = (await api.operation(finished["id"])).json
    update = (
        await api.update(finished["metadata"]["imageId"], {"updateMask": "name", "name": "x"})
    ).json

    for method in ("GET", "POST"):
        assert (await api.cancel(cancelled["id"], method)).json == first
        assert (await api.cancel(finished["id"], method)).json == before
        assert (await api.cancel(update["id"], method)).json == update


async def test_cancel_of_a_delete_is_a_failed_precondition(api: Api) -> None:
    image_id = await api.new_image()
    delete = (await api.delete(image_id)).json

    for method in ("GET", "POST"):
        reply = await api.cancel(delete["id"], method)
        assert (reply.status, reply.code) == (400, 9), reply.body
    assert (await api.operation(delete["id"])).json == delete


async def test_cancel_of_an_unknown_operation_is_404(api: Api) -> None:
    for method in ("GET", "POST"):
        reply = await api.cancel(MISSING_OPERATION, method)
        assert (reply.status, reply.code) == (404, 5), reply.body


async def test_cancel_on_another_verb_is_refused_in_the_error_shape(api: Api) -> None:
    create = (await api.create()).json

    for method in ("PUT", "DELETE", "PATCH"):
        reply = await api.call(method, f"/operations/{create['id']}:cancel")
        assert 400 <= reply.status < 600 and reply.status != 500, reply.body
        assert set(reply.json) == {"code", "message", "details"}
    assert (await api.operation(create["id"])).json["done"] is False
