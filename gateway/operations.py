"""The Operation service's routes over api/operations.py: get, and cancel (GET or POST, as the
contract's sources disagree)."""

from aiohttp import web

from api import operations
from contracts.ids import OPERATION_ID, checked_path
from contracts.operations import GetOperationRequest
from gateway.context import context_of
from gateway.http import query_request, respond
from gateway.keys import DB
from gateway.publishing import publish_committed

routes = web.RouteTableDef()


def _path(request: web.Request) -> dict[str, str]:
    return checked_path(request.match_info, operationId=OPERATION_ID)


@routes.get("/operations/{operationId:[^/:]+}")
async def get_operation(request: web.Request) -> web.Response:
    parsed = query_request(request, GetOperationRequest, _path(request))
    return respond(await operations.get_operation(context_of(request), parsed, request.app[DB]))


@routes.route("*", "/operations/{operationId:[^/:]+}:cancel")
async def cancel_operation(request: web.Request) -> web.Response:
    if request.method not in ("GET", "POST"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    parsed = query_request(request, GetOperationRequest, _path(request))
    answer = await operations.cancel_operation(context_of(request), parsed, request.app[DB])
    await publish_committed(request.app, answer.messages)
    return respond(answer.operation)
