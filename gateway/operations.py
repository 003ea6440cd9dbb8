"""The Operation service: get, and cancel (GET or POST, as the contract's sources disagree)."""

from aiohttp import web

from contracts.errors import FailedPrecondition
from contracts.ids import OPERATION_ID, checked_path
from contracts.operations import GetOperationRequest
from gateway.auth import authorization
from gateway.auth.authorization import Permission
from gateway.context import context_of
from gateway.http import query_request, respond
from gateway.keys import DB
from gateway.publishing import publish_committed
from lifecycle import transitions
from lifecycle.changes import RequestCancel
from store import operations
from store.db import Connection
from store.operations import OperationRecord, to_operation

routes = web.RouteTableDef()


def _path(request: web.Request) -> dict[str, str]:
    return checked_path(request.match_info, operationId=OPERATION_ID)


async def _existing(conn: Connection, operation_id: str) -> OperationRecord:
    record = await operations.get(conn, operation_id)
    if record is None:
        raise authorization.missing_operation(operation_id)
    return record


@routes.get("/operations/{operationId:[^/:]+}")
async def get_operation(request: web.Request) -> web.Response:
    parsed = query_request(request, GetOperationRequest, _path(request))
    context = context_of(request)
    async with request.app[DB].reading() as conn:
        record = await _existing(conn, parsed.operation_id)
        await authorization.require_on_operation(conn, context, record, Permission.GET)
        (operation,) = await authorization.shown_operations(conn, context, [record])
    return respond(operation)


@routes.route("*", "/operations/{operationId:[^/:]+}:cancel")
async def cancel_operation(request: web.Request) -> web.Response:
    if request.method not in ("GET", "POST"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    parsed = query_request(request, GetOperationRequest, _path(request))
    context = context_of(request)
    ended = None
    async with request.app[DB].transaction() as conn:
        record = await _existing(conn, parsed.operation_id)
        await authorization.require_on_operation(conn, context, record, Permission.CANCEL)
        if not record.done:
            if record.kind != operations.CREATE:
                raise FailedPrecondition(
                    f"operation {record.id} ({record.kind}) cannot be cancelled"
                )
            cancel = RequestCancel(
                operation_id=record.id,
                image_id=record.resource_id,
                request_id=context.request_id,
            )
            (ended,) = await transitions.run(conn, [cancel])
            record = await _existing(conn, record.id)
    if ended is not None:
        transitions.count_finished(ended)
        await publish_committed(request.app, ended.messages)
    return respond(to_operation(record))
