"""The Operation service: get, and cancel (GET or POST, as the contract's sources disagree)."""

import msgspec
from aiohttp import web

from contracts.enums import ImageStatus
from contracts.errors import Code, FailedPrecondition
from contracts.ids import OPERATION_ID, checked_path
from contracts.notices import cancel_notice
from contracts.operations import GetOperationRequest, cancelled_status
from contracts.outbox_message import OutboxMessage
from gateway import authz
from gateway.authz import Permission
from gateway.context import context_of
from gateway.http import query_request, respond
from gateway.keys import DB
from gateway.publishing import publish_committed
from runtime.clock import now_us
from runtime.metrics import operation_finished
from store import bindings, events, images, operations, outbox_table
from store.db import Connection
from store.images import ImageRecord, to_image
from store.operations import OperationRecord, to_operation

routes = web.RouteTableDef()
CANCELLED = cancelled_status()


def _path(request: web.Request) -> dict[str, str]:
    return checked_path(request.match_info, operationId=OPERATION_ID)


async def _existing(conn: Connection, operation_id: str, *, lock: bool = False) -> OperationRecord:
    record = await operations.get(conn, operation_id, lock=lock)
    if record is None:
        raise authz.missing_operation(operation_id)
    return record


@routes.get("/operations/{operationId:[^/:]+}")
async def get_operation(request: web.Request) -> web.Response:
    parsed = query_request(request, GetOperationRequest, _path(request))
    context = context_of(request)
    async with request.app[DB].reading() as conn:
        record = await _existing(conn, parsed.operation_id)
        await authz.require_on_operation(conn, context, record, Permission.GET)
        (operation,) = await authz.shown_operations(conn, context, [record])
    return respond(operation)


async def _cancel_unclaimed_create(
    conn: Connection, record: OperationRecord, image: ImageRecord | None, now: int
) -> list[OutboxMessage]:
    """No worker holds the create: end it here. The image never got bytes; remove it."""
    await operations.finish(conn, record.id, now, error=CANCELLED)
    if image is None or image.status is not ImageStatus.CREATING:
        return []
    done = msgspec.structs.replace(record, done=True, modified_at=now, error=CANCELLED)
    announced = [events.operation_done(done), ("deleted", record.id, to_image(image))]
    rows = await events.record_many(conn, image, announced)
    await images.delete(conn, image.id, expected=ImageStatus.CREATING)
    await bindings.remove_all(conn, image.id)
    return rows


async def _request_cancel(
    conn: Connection, record: OperationRecord, image: ImageRecord | None, request_id: str, now: int
) -> tuple[list[OutboxMessage], bool]:
    """Ask for the open create to stop: a worker that may be running it is sent a notice, and
    one that no worker holds ends here. Its outbox rows, and whether it ended here."""
    await operations.request_cancel(conn, record.id, now)
    rows: list[OutboxMessage] = []
    if record.lease_owner is not None:
        rows.append(await outbox_table.add(conn, cancel_notice(record.id, request_id), now))
    if record.lease_owner is None or record.lease_until < now:
        return rows + await _cancel_unclaimed_create(conn, record, image, now), True
    return rows, False


@routes.route("*", "/operations/{operationId:[^/:]+}:cancel")
async def cancel_operation(request: web.Request) -> web.Response:
    if request.method not in ("GET", "POST"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    parsed = query_request(request, GetOperationRequest, _path(request))
    context = context_of(request)
    now, ended_here = now_us(), False
    rows: list[OutboxMessage] = []
    async with request.app[DB].transaction() as conn:
        record = await _existing(conn, parsed.operation_id)
        await authz.require_on_operation(conn, context, record, Permission.CANCEL)
        if not record.done:
            if record.kind != operations.CREATE:
                raise FailedPrecondition(
                    f"operation {record.id} ({record.kind}) cannot be cancelled"
                )
            # Image before operation: the lock order every transition uses.
            image = await images.get(conn, record.resource_id, lock=True)
            record = await _existing(conn, record.id, lock=True)
            if not record.done:
                rows, ended_here = await _request_cancel(
                    conn, record, image, context.request_id, now
                )
                record = await _existing(conn, record.id)
    if ended_here:
        operation_finished(operations.CREATE, Code.CANCELLED)
    await publish_committed(request.app, rows)
    return respond(to_operation(record))
