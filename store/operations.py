"""The operations table: long-running operations, their leases and results."""

from collections.abc import Sequence

import msgspec

from contracts.operations import (
    Operation,
    OperationMetadata,
    OperationResponse,
    Status,
    metadata_decoder,
    response_decoder,
    status_decoder,
)
from runtime.clock import to_datetime
from store.db import Connection, Row, fetch_locked

_encoder = msgspec.json.Encoder()

# Operation kinds. Create and delete are carried out by workers; the others finish at once.
CREATE = "image.create"
DELETE = "image.delete"
UPDATE = "image.update"
SET_ACCESS = "image.set_access_bindings"
UPDATE_ACCESS = "image.update_access_bindings"
SET_FOLDER_ACCESS = "folder.set_access_bindings"
UPDATE_FOLDER_ACCESS = "folder.update_access_bindings"
# How long a queued worker operation may wait for a worker before the reconciler re-drives it.
PENDING_GRACE_US = 300 * 1_000_000


class OperationRecord(msgspec.Struct, kw_only=True):
    """`params` is the kind-specific input a worker needs (JSON), e.g. a create's source."""

    id: str
    resource_id: str
    kind: str
    description: str
    created_by: str
    created_at: int
    modified_at: int
    done: bool = False
    metadata: OperationMetadata
    error: Status | None = None
    response: OperationResponse | None = None
    params: bytes = b"{}"
    cancel_requested: bool = False
    lease_owner: str | None = None
    lease_until: int = 0
    request_id: str = ""  # the HTTP request that started it, carried by its commands
    folder_id: str = ""  # the folder of its resource: who may read it once the image is gone


def to_operation(record: OperationRecord) -> Operation:
    return Operation(
        id=record.id,
        description=record.description,
        created_at=to_datetime(record.created_at),
        created_by=record.created_by,
        modified_at=to_datetime(record.modified_at),
        done=record.done,
        metadata=record.metadata,
        error=record.error,
        response=record.response,
    )


_COLUMNS = (
    "id, resource_id, kind, description, created_by, created_at, modified_at, done, metadata,"
    " error, response, params, cancel_requested, lease_owner, lease_until, request_id, folder_id"
)


def _text(value: object | None) -> str | None:
    return None if value is None else _encoder.encode(value).decode()


def _from_row(row: Row) -> OperationRecord:
    return OperationRecord(
        id=row["id"],
        resource_id=row["resource_id"],
        kind=row["kind"],
        description=row["description"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        modified_at=row["modified_at"],
        done=bool(row["done"]),
        metadata=metadata_decoder.decode(row["metadata"]),
        error=status_decoder.decode(row["error"]) if row["error"] else None,
        response=response_decoder.decode(row["response"]) if row["response"] else None,
        params=row["params"].encode(),
        cancel_requested=bool(row["cancel_requested"]),
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        request_id=row["request_id"],
        folder_id=row["folder_id"],
    )


async def insert(conn: Connection, record: OperationRecord) -> None:
    await insert_many(conn, [record])


async def insert_many(conn: Connection, records: Sequence[OperationRecord]) -> None:
    await conn.executemany(
        f"INSERT INTO operations ({_COLUMNS}) VALUES ({', '.join('?' * 17)})",
        [_values(record) for record in records],
    )


def _values(record: OperationRecord) -> tuple[object, ...]:
    return (
        record.id,
        record.resource_id,
        record.kind,
        record.description,
        record.created_by,
        record.created_at,
        record.modified_at,
        int(record.done),
        _text(record.metadata),
        _text(record.error),
        _text(record.response),
        record.params.decode(),
        int(record.cancel_requested),
        record.lease_owner,
        record.lease_until,
        record.request_id,
        record.folder_id,
    )


async def get(conn: Connection, operation_id: str) -> OperationRecord | None:
    """The operation, unlocked (`get_locked` locks)."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM operations WHERE id = ?", operation_id)
    return _from_row(row) if row else None


async def get_locked(conn: Connection, operation_ids: Sequence[str]) -> dict[str, OperationRecord]:
    """The operations that exist among `operation_ids`, locked until commit (in id order)."""
    rows = await fetch_locked(conn, "operations", _COLUMNS, operation_ids)
    return {record.id: record for record in map(_from_row, rows)}


_FINISH = (
    "UPDATE operations SET done = 1, response = ?, error = ?, modified_at = ?,"
    " lease_owner = NULL, lease_until = 0 WHERE id = ? AND done = 0"
)


async def finish(
    conn: Connection,
    finished: Sequence[tuple[str, OperationResponse | None, Status | None]],
    now: int,
) -> None:
    """Mark open operations done, each with its response or its error; one already done is
    left as it is."""
    await conn.executemany(
        _FINISH,
        [(_text(response), _text(error), now, op_id) for op_id, response, error in finished],
    )


async def request_cancel(conn: Connection, operation_ids: Sequence[str], now: int) -> None:
    """Ask open operations to stop; one already done is left as it is."""
    await conn.executemany(
        "UPDATE operations SET cancel_requested = 1, modified_at = ? WHERE id = ? AND done = 0",
        [(now, operation_id) for operation_id in operation_ids],
    )


async def take_leases(
    conn: Connection, operation_ids: Sequence[str], owner: str, now: int, until: int
) -> dict[str, OperationRecord]:
    """Claim the open operations whose lease is free or expired; those claimed, as claimed.
    Not one we hold already: a second copy of a command we are running must not start a
    second import."""
    if not operation_ids:  # `IN ()` is no SQL to PostgreSQL
        return {}
    marks = ", ".join("?" for _ in operation_ids)
    rows = await conn.fetch(
        f"UPDATE operations SET lease_owner = ?, lease_until = ? WHERE id IN ({marks})"
        f" AND done = 0 AND (lease_owner IS NULL OR lease_until < ?) RETURNING {_COLUMNS}",
        owner,
        until,
        *operation_ids,
        now,
    )
    return {record.id: record for record in map(_from_row, rows)}


async def renew_lease(conn: Connection, operation_id: str, owner: str, until: int) -> bool:
    """Extend a lease we hold; False once the operation is done or taken by another."""
    changed = await conn.execute(
        "UPDATE operations SET lease_until = ? WHERE id = ? AND done = 0 AND lease_owner = ?",
        until,
        operation_id,
        owner,
    )
    return changed == 1


async def release_lease(conn: Connection, operation_id: str, owner: str, until: int) -> bool:
    """Give an open operation back to the queue: no owner, re-driven after `until`."""
    changed = await conn.execute(
        "UPDATE operations SET lease_owner = NULL, lease_until = ?"
        " WHERE id = ? AND done = 0 AND lease_owner = ?",
        until,
        operation_id,
        owner,
    )
    return changed == 1


async def defer_lease(conn: Connection, operation_id: str, expected_until: int, until: int) -> bool:
    """Compare-and-set an expired lease to pending until `until`; False if someone moved it."""
    changed = await conn.execute(
        "UPDATE operations SET lease_owner = NULL, lease_until = ?"
        " WHERE id = ? AND done = 0 AND lease_until = ?",
        until,
        operation_id,
        expected_until,
    )
    return changed == 1


async def expired(conn: Connection, now: int, limit: int) -> list[OperationRecord]:
    """Open operations whose lease ran out (or that were never leased, after `now`)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM operations WHERE done = 0 AND lease_until < ?"
        " ORDER BY lease_until LIMIT ?",
        now,
        limit,
    )
    return [_from_row(row) for row in rows]


async def page_for_resource(
    conn: Connection, resource_id: str, after: tuple[int, str] | None, limit: int
) -> list[OperationRecord]:
    """A resource's operations, newest first; `after` is the last row's (created_at, id)."""
    where, args = "resource_id = ?", list[object]([resource_id])
    if after is not None:
        where += " AND (created_at, id) < (?, ?)"
        args.extend(after)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM operations WHERE {where}"
        " ORDER BY created_at DESC, id DESC LIMIT ?",
        *args,
        limit,
    )
    return [_from_row(row) for row in rows]


async def open_of_kind(
    conn: Connection, resource_ids: Sequence[str], kind: str
) -> list[OperationRecord]:
    """The resources' operations of one kind that are not done yet."""
    if not resource_ids:  # `IN ()` is no SQL to PostgreSQL
        return []
    marks = ", ".join("?" for _ in resource_ids)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM operations"
        f" WHERE resource_id IN ({marks}) AND kind = ? AND done = 0",
        *resource_ids,
        kind,
    )
    return [_from_row(row) for row in rows]
