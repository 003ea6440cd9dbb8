"""The access-binding routes of an image and of a folder over api/access_bindings.py: each
parses its request, calls the method, publishes what it committed and encodes the answer."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from api import access_bindings
from api.context import RequestContext
from api.mutating_calls import Answer
from contracts.access import (
    ListAccessBindingsRequest,
    SetAccessBindingsRequest,
    UpdateAccessBindingsRequest,
)
from contracts.ids import FOLDER_ID, IMAGE_ID, IdRule, checked_path
from gateway.context import context_of
from gateway.http import body_request, idempotency_claim, query_request, respond
from gateway.keys import DB, PAGE_TOKENS
from gateway.publishing import publish_committed
from store.db import Database
from store.idempotency import Claim

routes = web.RouteTableDef()
R = TypeVar("R", SetAccessBindingsRequest, UpdateAccessBindingsRequest)
IMAGE = "/compute/v1/images/{resourceId:[^/:]+}"
FOLDER = "/resource-manager/v1/folders/{resourceId:[^/:]+}"


def _path(request: web.Request, rule: IdRule) -> dict[str, str]:
    return checked_path(request.match_info, resourceId=rule)


@routes.get(IMAGE + ":listAccessBindings")
async def list_image_access_bindings(request: web.Request) -> web.Response:
    parsed = query_request(request, ListAccessBindingsRequest, _path(request, IMAGE_ID))
    app = request.app
    listed = await access_bindings.list_image_bindings(
        context_of(request), parsed, app[DB], app[PAGE_TOKENS]
    )
    return respond(listed)


@routes.get(FOLDER + ":listAccessBindings")
async def list_folder_access_bindings(request: web.Request) -> web.Response:
    parsed = query_request(request, ListAccessBindingsRequest, _path(request, FOLDER_ID))
    app = request.app
    listed = await access_bindings.list_folder_bindings(
        context_of(request), parsed, app[DB], app[PAGE_TOKENS]
    )
    return respond(listed)


@routes.post(IMAGE + ":setAccessBindings")
async def set_image_access_bindings(request: web.Request) -> web.Response:
    parsed = await body_request(request, SetAccessBindingsRequest, _path(request, IMAGE_ID))
    return await _answered(request, parsed, access_bindings.set_image_bindings)


@routes.post(IMAGE + ":updateAccessBindings")
async def update_image_access_bindings(request: web.Request) -> web.Response:
    parsed = await body_request(request, UpdateAccessBindingsRequest, _path(request, IMAGE_ID))
    return await _answered(request, parsed, access_bindings.update_image_bindings)


@routes.post(FOLDER + ":setAccessBindings")
async def set_folder_access_bindings(request: web.Request) -> web.Response:
    parsed = await body_request(request, SetAccessBindingsRequest, _path(request, FOLDER_ID))
    return await _answered(request, parsed, access_bindings.set_folder_bindings)


@routes.post(FOLDER + ":updateAccessBindings")
async def update_folder_access_bindings(request: web.Request) -> web.Response:
    parsed = await body_request(request, UpdateAccessBindingsRequest, _path(request, FOLDER_ID))
    return await _answered(request, parsed, access_bindings.update_folder_bindings)


async def _answered(
    request: web.Request,
    parsed: R,
    method: Callable[[RequestContext, R, Database, Claim | None], Awaitable[Answer]],
) -> web.Response:
    """Call a binding change with the caller's Idempotency-Key; publish what it committed."""
    context = context_of(request)
    key = idempotency_claim(request, context, parsed)
    answer = await method(context, parsed, request.app[DB], key)
    await publish_committed(request.app, answer.messages)
    return respond(answer.operation)
