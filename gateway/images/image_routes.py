"""Image routes: the read methods here, the writes in image_writes."""

from typing import cast

from aiohttp import web

from contracts.errors import InvalidArgument, NotFound
from contracts.ids import IMAGE_ID, checked_path
from contracts.images import (
    CreateImageRequest,
    DeleteImageRequest,
    GetImageLatestByFamilyRequest,
    GetImageRequest,
    ListImageOperationsRequest,
    ListImagesRequest,
    ListImagesResponse,
    UpdateImageRequest,
)
from contracts.operations import ListImageOperationsResponse
from gateway import audit
from gateway.auth import authorization
from gateway.auth.authorization import Permission
from gateway.context import RequestContext, context_of
from gateway.http import body_request, query_request, respond
from gateway.images import image_writes
from gateway.images.query import parse_filter, parse_order
from gateway.keys import DB, PAGE_TOKENS
from gateway.mutating_calls import idempotency_claim
from gateway.pagination import page_size, to_base36
from store import images, operations
from store.db import Connection
from store.images import ImageRecord, SortColumn, to_image
from store.operations import OperationRecord

routes = web.RouteTableDef()
_ID_LENGTH = 20


def _path(request: web.Request) -> dict[str, str]:
    return checked_path(request.match_info, imageId=IMAGE_ID)


@routes.get("/compute/v1/images/{imageId:[^/:]+}")
async def get_image(request: web.Request) -> web.Response:
    parsed = query_request(request, GetImageRequest, _path(request))
    async with request.app[DB].reading() as conn:
        image = await authorization.image(
            conn, context_of(request), parsed.image_id, Permission.GET
        )
    return respond(to_image(image))


@routes.get("/compute/v1/images:latestByFamily")
async def latest_by_family(request: web.Request) -> web.Response:
    parsed = query_request(request, GetImageLatestByFamilyRequest)
    async with request.app[DB].reading() as conn:
        image = await authorization.latest_ready(
            conn, context_of(request), parsed.folder_id, parsed.family
        )
    if image is None:
        raise NotFound(f"no READY image of family {parsed.family!r} in folder {parsed.folder_id}")
    return respond(to_image(image))


def _keyset(row_id: str, created_at: int) -> str:
    return row_id + to_base36(created_at)


def _position(image: ImageRecord, sort: SortColumn) -> str:
    """The keyset position after `image`: its id, then its sort value (url-safe text)."""
    if sort == "name":
        return image.id + image.name
    if sort == "created_at":
        return _keyset(image.id, image.created_at)
    return image.id


def _after(position: str, sort: SortColumn) -> tuple[object, ...]:
    image_id, value = position[:_ID_LENGTH], position[_ID_LENGTH:]
    if sort == "name":
        return (value, image_id)
    if sort == "created_at":
        try:
            return (int(value, 36), image_id)
        except ValueError:
            raise InvalidArgument("pageToken: malformed") from None
    return (image_id,)


@routes.get("/compute/v1/images")
async def list_images(request: web.Request) -> web.Response:
    parsed = query_request(request, ListImagesRequest)
    conditions = parse_filter(parsed.filter)
    sort, descending = parse_order(parsed.order_by)
    scope = f"images\n{parsed.folder_id}\n{parsed.filter}\n{parsed.order_by}"
    tokens, limit = request.app[PAGE_TOKENS], page_size(parsed.page_size)
    after = _after(tokens.open(scope, parsed.page_token), sort) if parsed.page_token else None
    async with request.app[DB].reading() as conn:
        await authorization.require_on_folder(
            conn, context_of(request), parsed.folder_id, Permission.LIST
        )
        rows = await images.page(
            conn, parsed.folder_id, conditions, sort, descending, after, limit + 1
        )
    token = tokens.issue(scope, _position(rows[limit - 1], sort)) if len(rows) > limit else ""
    return respond(
        ListImagesResponse(images=[to_image(r) for r in rows[:limit]], next_page_token=token)
    )


@routes.get("/compute/v1/images/{imageId:[^/:]+}/operations")
async def list_operations(request: web.Request) -> web.Response:
    parsed = query_request(request, ListImageOperationsRequest, _path(request))
    scope = f"operations\n{parsed.image_id}"
    tokens, limit = request.app[PAGE_TOKENS], page_size(parsed.page_size)
    after = None
    if parsed.page_token:
        created_at, operation_id = _after(tokens.open(scope, parsed.page_token), "created_at")
        after = (cast(int, created_at), str(operation_id))
    context = context_of(request)
    async with request.app[DB].reading() as conn:
        rows = await _operations_page(conn, context, parsed.image_id, after, limit)
        shown = await authorization.shown_operations(conn, context, rows[:limit])
    more = len(rows) > limit
    token = (
        tokens.issue(scope, _keyset(rows[limit - 1].id, rows[limit - 1].created_at)) if more else ""
    )
    return respond(ListImageOperationsResponse(operations=shown, next_page_token=token))


async def _operations_page(
    conn: Connection,
    context: RequestContext,
    image_id: str,
    after: tuple[int, str] | None,
    limit: int,
) -> list[OperationRecord]:
    """One page (plus one row) of the image's operations; those of a deleted image stay
    readable to whoever may view its folder."""
    image = await authorization.image_or_none(conn, context, image_id, Permission.GET)
    rows = await operations.page_for_resource(conn, image_id, after, limit + 1)
    if image is None and not (
        rows and await authorization.may(conn, context, rows[0], Permission.GET)
    ):
        raise authorization.missing_image(image_id)
    return rows


@routes.post("/compute/v1/images")
async def create_image(request: web.Request) -> web.Response:
    context = context_of(request)
    parsed = await body_request(request, CreateImageRequest)
    request[audit.RESOURCE] = f"folders/{parsed.folder_id}"
    key = idempotency_claim(request, context, parsed)
    return respond(await image_writes.create_image(request.app, context, parsed, key))


@routes.patch("/compute/v1/images/{imageId:[^/:]+}")
async def update_image(request: web.Request) -> web.Response:
    context = context_of(request)
    parsed = await body_request(request, UpdateImageRequest, _path(request))
    key = idempotency_claim(request, context, parsed)
    return respond(await image_writes.update_image(request.app, context, parsed, key))


@routes.delete("/compute/v1/images/{imageId:[^/:]+}")
async def delete_image(request: web.Request) -> web.Response:
    context = context_of(request)
    parsed = query_request(request, DeleteImageRequest, _path(request))
    key = idempotency_claim(request, context, parsed)
    return respond(await image_writes.delete_image(request.app, context, parsed.image_id, key))
