"""The Operation service: get, and cancel (GET or POST, as the contract's sources disagree)."""

import msgspec
from aiohttp import web

from contracts.enums import ImageStatus
from contracts.errors import Code, FailedPrecondition
from contracts.ids import OPERATION_ID, checked_path
from contracts.metrics import operation_finished
from contracts.operations import GetOperationRequest, cancelled_status
from contracts.outbox import OutboxMessage
from gateway import authz
from gateway.authz import Permission
from gateway.context import context_of
from gateway.http import query_request, respond
from gateway.keys import DB
from gateway.publishing import publish_committed
from store import bindings, events, images, operations
from store.clock import now_us
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


@routes.route("*", "/operations/{operationId:[^/:]+}:cancel")
async def cancel_operation(request: web.Request) -> web.Response:
    if request.method not in ("GET", "POST"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    parsed = query_request(request, GetOperationRequest, _path(request))
    now, rows, ended_here = now_us(), [], False
    async with request.app[DB].transaction() as conn:
        record = await _existing(conn, parsed.operation_id)
        await authz.require_on_operation(conn, context_of(request), record, Permission.CANCEL)
        if not record.done:
            if record.kind != operations.CREATE:
                raise FailedPrecondition(
                    f"operation {record.id} ({record.kind}) cannot be cancelled"
                )
            # Image before operation: the lock order every transition uses.
            image = await images.get(conn, record.resource_id, lock=True)
            record = await _existing(conn, record.id, lock=True)
            if not record.done:
                await operations.request_cancel(conn, record.id, now)
                if record.lease_owner is None or record.lease_until < now:
                    rows = await _cancel_unclaimed_create(conn, record, image, now)
                    ended_here = True
                record = await _existing(conn, record.id)
    if ended_here:
        operation_finished(operations.CREATE, Code.CANCELLED)
    await publish_committed(request.app, rows)
    return respond(to_operation(record))
