"""The Operation service: get, and cancel."""

from api import authorization
from api.authorization import Permission
from api.context import RequestContext
from api.mutating_calls import Answer
from contracts.errors import FailedPrecondition
from contracts.operations import GetOperationRequest, Operation
from lifecycle import transitions
from lifecycle.changes import RequestCancel
from lifecycle.transitions import Transition
from store import operations
from store.db import Connection, Database
from store.operations import OperationRecord, to_operation


async def get_operation(
    context: RequestContext, request: GetOperationRequest, db: Database
) -> Operation:
    async with db.reading() as conn:
        record = await _existing(conn, request.operation_id)
        await authorization.require_on_operation(conn, context, record, Permission.GET)
        (operation,) = await authorization.shown_operations(conn, context, [record])
    return operation


async def cancel_operation(
    context: RequestContext, request: GetOperationRequest, db: Database
) -> Answer:
    """Ask an open create to stop (lifecycle's RequestCancel); a done operation is answered as
    it is, any other kind refused."""
    ended: Transition | None = None
    async with db.transaction() as conn:
        record = await _existing(conn, request.operation_id)
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
    if ended is None:
        return Answer(to_operation(record), [])
    transitions.count_finished(ended)
    return Answer(to_operation(record), ended.messages)


async def _existing(conn: Connection, operation_id: str) -> OperationRecord:
    record = await operations.get(conn, operation_id)
    if record is None:
        raise authorization.missing_operation(operation_id)
    return record
