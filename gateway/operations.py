"""The Operation service: get, and cancel (GET or POST, as the contract's sources disagree)."""

from aiohttp import web

from contracts.errors import FailedPrecondition
from contracts.ids import OPERATION_ID, checked_path
from contracts.notices import cancel_notice
from contracts.operations import GetOperationRequest
from contracts.outbox_message import OutboxMessage
from gateway import authz
from gateway.authz import Permission
from gateway.context import context_of
from gateway.http import query_request, respond
from gateway.keys import DB
from gateway.publishing import publish_committed
from lifecycle import transitions
from lifecycle.changes import CancelImport
from lifecycle.transitions import Transition
from runtime.clock import now_us
from store import images, operations, outbox_table
from store.db import Connection
from store.operations import OperationRecord, to_operation

routes = web.RouteTableDef()


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


async def _request_cancel(
    conn: Connection, record: OperationRecord, request_id: str, now: int
) -> tuple[list[OutboxMessage], Transition | None]:
    """Ask for the open create to stop: a worker that may be running it is sent a notice, and
    one that no worker holds ends here (the image never got bytes). Its outbox rows, and the
    transition that ended it here."""
    await operations.request_cancel(conn, record.id, now)
    rows: list[OutboxMessage] = []
    if record.lease_owner is not None:
        rows.append(await outbox_table.add(conn, cancel_notice(record.id, request_id), now))
    if record.lease_owner is None or record.lease_until < now:
        cancel = CancelImport(operation_id=record.id, image_id=record.resource_id)
        (ended,) = await transitions.run(conn, [cancel])
        return rows + ended.messages, ended
    return rows, None


@routes.route("*", "/operations/{operationId:[^/:]+}:cancel")
async def cancel_operation(request: web.Request) -> web.Response:
    if request.method not in ("GET", "POST"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    parsed = query_request(request, GetOperationRequest, _path(request))
    context = context_of(request)
    now, ended = now_us(), None
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
            await images.get_locked(conn, [record.resource_id])
            record = await _existing(conn, record.id, lock=True)
            if not record.done:
                rows, ended = await _request_cancel(conn, record, context.request_id, now)
                record = await _existing(conn, record.id)
    if ended is not None:
        transitions.count_finished(ended)
    await publish_committed(request.app, rows)
    return respond(to_operation(record))
