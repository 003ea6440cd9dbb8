"""The operations table: payload round trips, finishing once, cancelling, leases."""

import asyncio
import datetime as dt
from typing import Any

from contracts.access import (
    AccessBinding,
    AccessBindingDelta,
    AccessBindingsOperationResult,
    SetAccessBindingsMetadata,
    Subject,
)
from contracts.enums import AccessBindingAction, ImageStatus, OsType
from contracts.images import ImageAny, Os
from contracts.operations import (
    CreateImageMetadata,
    DeleteImageMetadata,
    Empty,
    RequestInfo,
    Status,
)
from store import Database, operations
from store.operations import OperationRecord

T0 = 1_700_000_000_000_000
MINUTE = 60_000_000


def operation(operation_id: str, resource_id: str = "img1", **fields: Any) -> OperationRecord:
    fields.setdefault("metadata", CreateImageMetadata(image_id=resource_id))
    return OperationRecord(
        id=operation_id,
        resource_id=resource_id,
        kind=fields.pop("kind", operations.CREATE),
        description=fields.pop("description", "Create image"),
        created_by=fields.pop("created_by", "ajeuser1"),
        created_at=fields.pop("created_at", T0),
        modified_at=fields.pop("modified_at", T0),
        **fields,
    )


IMAGE = ImageAny(
    id="img1",
    folder_id="fld1",
    created_at=dt.datetime(2024, 6, 11, 12, 30, 15, 123456, tzinfo=dt.UTC),
    name="ubuntu",
    labels={"env": "prod"},
    size="4398046511104",
    status=ImageStatus.READY,
    os=Os(type=OsType.LINUX),
)
FAILURE = Status(
    code=9,
    message="image source is not a disk image",
    details=[
        RequestInfo(request_id="req1", serving_data="worker-2"),
    ],
)


async def insert(db: Database, *records: OperationRecord) -> None:
    async with db.transaction() as conn:
        for record in records:
            await operations.insert(conn, record)


async def get(db: Database, operation_id: str) -> OperationRecord:
    async with db.transaction() as conn:
        record = await operations.get(conn, operation_id)
    assert record is not None
    return record


async def test_open_operation_round_trips(db: Database) -> None:
    record = operation(
        "opr1",
        description="Create image «ubuntu»",
        params=b'{"uri":"https://example.com/ubuntu.qcow2"}',
        lease_owner="worker-1",
        lease_until=T0 + MINUTE,
        cancel_requested=True,
    )
    await insert(db, record)

    assert await get(db, "opr1") == record
    async with db.transaction() as conn:
        assert await operations.get_locked(conn, ["opr1"]) == {"opr1": record}
        assert await operations.get(conn, "missing") is None


async def test_finished_payloads_round_trip(db: Database) -> None:
    result = AccessBindingsOperationResult(
        effective_deltas=[
            AccessBindingDelta(
                action=AccessBindingAction.ADD,
                access_binding=AccessBinding(
                    role_id="viewer", subject=Subject(id="u1", type="userAccount")
                ),
            )
        ]
    )
    records = [
        operation("opr1", done=True, response=IMAGE),
        operation(
            "opr2",
            done=True,
            response=Empty(),
            metadata=DeleteImageMetadata(image_id="img1"),
            kind=operations.DELETE,
        ),
        operation("opr3", done=True, error=FAILURE),
        operation(
            "opr4",
            done=True,
            response=result,
            kind=operations.SET_ACCESS,
            metadata=SetAccessBindingsMetadata(resource_id="img1"),
        ),
    ]
    await insert(db, *records)

    for record in records:
        assert await get(db, record.id) == record


async def test_finish_happens_once(db: Database) -> None:
    await insert(db, operation("opr1", lease_owner="worker-1", lease_until=T0 + MINUTE))

    async with db.transaction() as conn:
        await operations.finish(conn, [("opr1", IMAGE, None)], T0 + 5)
        await operations.finish(conn, [("opr1", None, FAILURE), ("missing", None, FAILURE)], T0 + 9)
        assert await operations.get(conn, "missing") is None

    done = await get(db, "opr1")
    assert (done.done, done.response, done.error, done.modified_at) == (True, IMAGE, None, T0 + 5)
    assert (done.lease_owner, done.lease_until) == (None, 0)


async def test_several_locked_operations_finish_at_once_and_only_once(db: Database) -> None:
    await insert(
        db,
        operation("opr1", lease_owner="worker-1", lease_until=T0 + MINUTE),
        operation("opr2"),
        operation("opr3", done=True, error=FAILURE, modified_at=T0 + 1),
    )
    ids = ["opr3", "opr1", "missing", "opr2"]

    async with db.transaction() as conn:
        assert await operations.get_locked(conn, []) == {}
        locked = await operations.get_locked(conn, ids)
        assert sorted(locked) == ["opr1", "opr2", "opr3"]
        await operations.finish(conn, [(i, IMAGE, None) for i in locked], T0 + 5)

    for operation_id in ("opr1", "opr2"):
        done = await get(db, operation_id)
        assert (done.done, done.response, done.error, done.modified_at) == (
            True,
            IMAGE,
            None,
            T0 + 5,
        )
        assert (done.lease_owner, done.lease_until) == (None, 0)
    kept = await get(db, "opr3")  # finished before: left as it was
    assert (kept.response, kept.error, kept.modified_at) == (None, FAILURE, T0 + 1)


async def test_finish_with_an_error(db: Database) -> None:
    await insert(db, operation("opr1"))

    async with db.transaction() as conn:
        await operations.finish(conn, [("opr1", None, FAILURE)], T0 + 5)

    done = await get(db, "opr1")
    assert (done.done, done.response, done.error) == (True, None, FAILURE)


async def test_request_cancel_only_while_open(db: Database) -> None:
    await insert(db, operation("opr1"), operation("opr2"))

    async with db.transaction() as conn:
        await operations.request_cancel(conn, ["opr1"], T0 + 3)
        await operations.finish(conn, [("opr2", Empty(), None)], T0 + 4)
        await operations.request_cancel(conn, ["opr2", "missing"], T0 + 5)
        assert await operations.get(conn, "missing") is None

    cancelled, finished = await get(db, "opr1"), await get(db, "opr2")
    assert (cancelled.cancel_requested, cancelled.modified_at, cancelled.done) == (
        True,
        T0 + 3,
        False,
    )
    assert (finished.cancel_requested, finished.modified_at) == (False, T0 + 4)


async def test_take_lease(db: Database) -> None:
    await insert(db, operation("opr1"), operation("opr2", done=True, response=Empty()))
    now = T0

    async def take(owner: str, at: int) -> bool:
        async with db.transaction() as conn:
            taken = (await operations.take_leases(conn, ["opr1"], owner, at, at + MINUTE)).get(
                "opr1"
            )
        assert taken is None or (taken.id, taken.lease_owner) == ("opr1", owner)
        return taken is not None

    assert await take("worker-a", now) is True  # free
    assert await take("worker-b", now + 1) is False  # held by another, unexpired
    assert await take("worker-a", now + 2) is False  # own and live: a second claim fails
    async with db.transaction() as conn:
        assert await operations.renew_lease(conn, "opr1", "worker-a", now + 2 + MINUTE)
        assert not await operations.renew_lease(conn, "opr1", "worker-b", now + 3 + MINUTE)
    assert (await get(db, "opr1")).lease_until == now + 2 + MINUTE
    assert await take("worker-b", now + 2 + MINUTE + 1) is True  # expired
    leased = await get(db, "opr1")
    assert (leased.lease_owner, leased.lease_until) == ("worker-b", now + 2 * MINUTE + 3)

    async with db.transaction() as conn:
        taken = await operations.take_leases(conn, ["opr2", "missing"], "w", now, now + MINUTE)
        assert await operations.take_leases(conn, [], "w", now, now + MINUTE) == {}
    assert taken == {}


async def test_take_leases_claims_only_the_free_among_several(db: Database) -> None:
    await insert(
        db,
        operation("opr1", lease_owner="worker-b", lease_until=T0 + MINUTE),  # live
        operation("opr2", done=True, response=Empty()),
        operation("opr3"),  # never leased
        operation("opr4", lease_owner="worker-b", lease_until=T0 - 1),  # expired
    )
    ids = ["opr4", "opr1", "missing", "opr2", "opr3"]
    async with db.transaction() as conn:
        taken = await operations.take_leases(conn, ids, "worker-a", T0, T0 + MINUTE)

    assert sorted(taken) == ["opr3", "opr4"]
    assert all(op.lease_owner == "worker-a" for op in taken.values())
    assert (await get(db, "opr1")).lease_owner == "worker-b"


async def test_concurrent_workers_one_takes_the_lease(db: Database) -> None:
    await insert(db, operation("opr1"))

    async def take(owner: str) -> bool:
        async with db.transaction() as conn:
            return bool(await operations.take_leases(conn, ["opr1"], owner, T0, T0 + MINUTE))

    won = await asyncio.gather(*(take(f"worker-{n}") for n in range(6)))

    assert won.count(True) == 1
    assert (await get(db, "opr1")).lease_owner == f"worker-{won.index(True)}"


async def test_expired_lists_open_operations_whose_lease_ran_out(db: Database) -> None:
    await insert(
        db,
        operation("opr1", lease_owner="w", lease_until=T0 - 10),
        operation("opr2"),  # never leased
        operation("opr3", lease_owner="w", lease_until=T0 + MINUTE),
        operation("opr4", done=True, response=Empty()),
        operation("opr5", "img2", lease_owner="w", lease_until=T0 - 20),
    )

    async with db.transaction() as conn:
        every = await operations.expired(conn, T0, 10)
        first_two = await operations.expired(conn, T0, 2)
        later = await operations.expired(conn, T0 + 2 * MINUTE, 10)

    assert [record.id for record in every] == ["opr2", "opr5", "opr1"]  # by lease_until
    assert [record.id for record in first_two] == ["opr2", "opr5"]
    assert [record.id for record in later] == ["opr2", "opr5", "opr1", "opr3"]


async def test_page_for_resource_newest_first(db: Database) -> None:
    ids = [f"opr{number:017d}" for number in (5, 12, 3, 40, 7, 21, 9)]
    await insert(db, *(operation(operation_id) for operation_id in ids))
    await insert(db, operation("opr00000000000000008", "img2"), operation("opr99", "img2"))

    seen: list[str] = []
    after = None
    while True:
        async with db.transaction() as conn:
            page = await operations.page_for_resource(conn, "img1", after, 3)
        seen.extend(record.id for record in page)
        if len(page) < 3:
            break
        after = (page[-1].created_at, page[-1].id)

    assert seen == sorted(ids, reverse=True)
    async with db.transaction() as conn:
        assert await operations.page_for_resource(conn, "img3", None, 3) == []
