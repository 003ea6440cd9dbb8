"""The Image service's read methods: get, getLatestByFamily, list and listOperations."""

from typing import cast

from api import authorization
from api.authorization import Permission
from api.context import RequestContext
from api.pagination import PageTokens, page_size, to_base36
from api.query import parse_filter, parse_order
from contracts.errors import InvalidArgument, NotFound
from contracts.images import (
    GetImageLatestByFamilyRequest,
    GetImageRequest,
    Image,
    ListImageOperationsRequest,
    ListImagesRequest,
    ListImagesResponse,
)
from contracts.operations import ListImageOperationsResponse
from store import images, operations
from store.db import Connection, Database
from store.images import ImageRecord, SortColumn, to_image
from store.operations import OperationRecord

_ID_LENGTH = 20


async def get_image(context: RequestContext, request: GetImageRequest, db: Database) -> Image:
    async with db.reading() as conn:
        image = await authorization.image(conn, context, request.image_id, Permission.GET)
    return to_image(image)


async def latest_by_family(
    context: RequestContext, request: GetImageLatestByFamilyRequest, db: Database
) -> Image:
    async with db.reading() as conn:
        image = await authorization.latest_ready(conn, context, request.folder_id, request.family)
    if image is None:
        raise NotFound(f"no READY image of family {request.family!r} in folder {request.folder_id}")
    return to_image(image)


async def list_images(
    context: RequestContext, request: ListImagesRequest, db: Database, tokens: PageTokens
) -> ListImagesResponse:
    conditions = parse_filter(request.filter)
    sort, descending = parse_order(request.order_by)
    scope = f"images\n{request.folder_id}\n{request.filter}\n{request.order_by}"
    limit = page_size(request.page_size)
    after = _after(tokens.open(scope, request.page_token), sort) if request.page_token else None
    async with db.reading() as conn:
        await authorization.require_on_folder(conn, context, request.folder_id, Permission.LIST)
        rows = await images.page(
            conn, request.folder_id, conditions, sort, descending, after, limit + 1
        )
    token = tokens.issue(scope, _position(rows[limit - 1], sort)) if len(rows) > limit else ""
    return ListImagesResponse(images=[to_image(r) for r in rows[:limit]], next_page_token=token)


async def list_operations(
    context: RequestContext,
    request: ListImageOperationsRequest,
    db: Database,
    tokens: PageTokens,
) -> ListImageOperationsResponse:
    scope = f"operations\n{request.image_id}"
    limit = page_size(request.page_size)
    after = None
    if request.page_token:
        created_at, operation_id = _after(tokens.open(scope, request.page_token), "created_at")
        after = (cast(int, created_at), str(operation_id))
    async with db.reading() as conn:
        rows = await _operations_page(conn, context, request.image_id, after, limit)
        shown = await authorization.shown_operations(conn, context, rows[:limit])
    last = rows[limit - 1] if len(rows) > limit else None
    token = tokens.issue(scope, _keyset(last.id, last.created_at)) if last else ""
    return ListImageOperationsResponse(operations=shown, next_page_token=token)


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
