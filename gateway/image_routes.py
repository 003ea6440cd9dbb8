"""Image routes: each parses its request and encodes the answer of the Image API's method
(api/images.py for the reads, api/image_writes.py for the writes)."""

from aiohttp import web

from api import image_writes, images
from contracts.ids import IMAGE_ID, checked_path
from contracts.images import (
    CreateImageRequest,
    DeleteImageRequest,
    GetImageLatestByFamilyRequest,
    GetImageRequest,
    ListImageOperationsRequest,
    ListImagesRequest,
    UpdateImageRequest,
)
from gateway import audit
from gateway.context import context_of
from gateway.http import body_request, idempotency_claim, query_request, respond
from gateway.keys import DB, PAGE_TOKENS, SERVICES
from gateway.publishing import publish_committed

routes = web.RouteTableDef()


def _path(request: web.Request) -> dict[str, str]:
    return checked_path(request.match_info, imageId=IMAGE_ID)


@routes.get("/compute/v1/images/{imageId:[^/:]+}")
async def get_image(request: web.Request) -> web.Response:
    parsed = query_request(request, GetImageRequest, _path(request))
    return respond(await images.get_image(context_of(request), parsed, request.app[DB]))


@routes.get("/compute/v1/images:latestByFamily")
async def latest_by_family(request: web.Request) -> web.Response:
    parsed = query_request(request, GetImageLatestByFamilyRequest)
    return respond(await images.latest_by_family(context_of(request), parsed, request.app[DB]))


@routes.get("/compute/v1/images")
async def list_images(request: web.Request) -> web.Response:
    parsed = query_request(request, ListImagesRequest)
    app = request.app
    return respond(await images.list_images(context_of(request), parsed, app[DB], app[PAGE_TOKENS]))


@routes.get("/compute/v1/images/{imageId:[^/:]+}/operations")
async def list_operations(request: web.Request) -> web.Response:
    parsed = query_request(request, ListImageOperationsRequest, _path(request))
    app = request.app
    listed = await images.list_operations(context_of(request), parsed, app[DB], app[PAGE_TOKENS])
    return respond(listed)


@routes.post("/compute/v1/images")
async def create_image(request: web.Request) -> web.Response:
    context = context_of(request)
    parsed = await body_request(request, CreateImageRequest)
    request[audit.RESOURCE] = f"folders/{parsed.folder_id}"
    key = idempotency_claim(request, context, parsed)
    return respond(await image_writes.create_image(context, parsed, request.app[SERVICES], key))


@routes.patch("/compute/v1/images/{imageId:[^/:]+}")
async def update_image(request: web.Request) -> web.Response:
    context = context_of(request)
    parsed = await body_request(request, UpdateImageRequest, _path(request))
    key = idempotency_claim(request, context, parsed)
    return respond(await image_writes.update_image(context, parsed, request.app[SERVICES], key))


@routes.delete("/compute/v1/images/{imageId:[^/:]+}")
async def delete_image(request: web.Request) -> web.Response:
    context = context_of(request)
    parsed = query_request(request, DeleteImageRequest, _path(request))
    key = idempotency_claim(request, context, parsed)
    answer = await image_writes.delete_image(context, parsed, request.app[SERVICES], key)
    await publish_committed(request.app, answer.messages)
    return respond(answer.operation)
