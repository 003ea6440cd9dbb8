"""The Operation service: get, and cancel (GET or POST, as the contract's sources disagree)."""

from aiohttp import web

from contracts.enums import ImageStatus
from contracts.errors import Code, FailedPrecondition, NotFound
from contracts.operations import GetOperationRequest, Status
from gateway.http import query_request, respond
from gateway.keys import DB
from gateway.publishing import publish_committed
from store import bindings, events, images, operations
from store.clock import now_us
from store.db import Connection
from store.operations import OperationRecord, to_operation

routes = web.RouteTableDef()
CANCELLED = Status(code=int(Code.CANCELLED), message="operation cancelled")


async def _existing(conn: Connection, operation_id: str) -> OperationRecord:
    record = await operations.get(conn, operation_id, lock=True)
    if record is None:
        raise NotFound(f"operation {operation_id} not found")
    return record


@routes.get("/operations/{operationId:[^/:]+}")
async def get_operation(request: web.Request) -> web.Response:
    parsed = query_request(request, GetOperationRequest, dict(request.match_info))
    async with request.app[DB].transaction() as conn:
        record = await _existing(conn, parsed.operation_id)
    return respond(to_operation(record))


async def _cancel_unclaimed_create(conn: Connection, record: OperationRecord, now: int) -> list:
    """No worker holds the create: end it here. The image never got bytes; remove it."""
    await operations.finish(conn, record.id, now, error=CANCELLED)
    image = await images.get(conn, record.resource_id, lock=True)
    if image is None or image.status is not ImageStatus.CREATING:
        return []
    row = await events.record(conn, image, "deleted", record.id)
    await images.delete(conn, image.id, expected=ImageStatus.CREATING)
    await bindings.remove_all(conn, image.id)
    return [row]


@routes.route("*", "/operations/{operationId:[^/:]+}:cancel")
async def cancel_operation(request: web.Request) -> web.Response:
    if request.method not in ("GET", "POST"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    parsed = query_request(request, GetOperationRequest, dict(request.match_info))
    now, rows = now_us(), []
    async with request.app[DB].transaction() as conn:
        record = await _existing(conn, parsed.operation_id)
        if not record.done:
            if record.kind != operations.CREATE:
                raise FailedPrecondition(f"operation {record.id} ({record.kind}) cannot be cancelled")
            await operations.request_cancel(conn, record.id, now)
            if record.lease_owner is None or record.lease_until < now:
                rows = await _cancel_unclaimed_create(conn, record, now)
            record = await _existing(conn, record.id)
    await publish_committed(request.app, rows)
    return respond(to_operation(record))
