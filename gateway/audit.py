"""The audit log: one structured line (event "audit") per mutating call, whatever its outcome:
who called (`subject`, empty when unauthenticated), which method, on which resource, and the
result (`ok` or the error code's name)."""

import structlog
from aiohttp import web

from gateway.context import context_of
from gateway.middleware import FAILURE, Handler

log = structlog.get_logger("kiln.audit")

IMAGE = "/compute/v1/images/{imageId}"
IMAGE_BINDINGS = "/compute/v1/images/{resourceId}"
FOLDER_BINDINGS = "/resource-manager/v1/folders/{resourceId}"
CANCEL = "/operations/{operationId}:cancel"
# (verb, route template) of every mutating call → its method name.
METHODS = {
    ("POST", "/compute/v1/images"): "ImageService.Create",
    ("PATCH", IMAGE): "ImageService.Update",
    ("DELETE", IMAGE): "ImageService.Delete",
    ("POST", IMAGE_BINDINGS + ":setAccessBindings"): "ImageService.SetAccessBindings",
    ("POST", IMAGE_BINDINGS + ":updateAccessBindings"): "ImageService.UpdateAccessBindings",
    ("POST", FOLDER_BINDINGS + ":setAccessBindings"): "FolderService.SetAccessBindings",
    ("POST", FOLDER_BINDINGS + ":updateAccessBindings"): "FolderService.UpdateAccessBindings",
    ("GET", CANCEL): "OperationService.Cancel",
    ("POST", CANCEL): "OperationService.Cancel",
}
# Set by a handler whose resource is not in its path (create: the folder).
RESOURCE = web.RequestKey("audit_resource", str)


def method_of(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return METHODS.get((request.method, resource.canonical)) if resource else None


def resource_of(request: web.Request) -> str:
    if RESOURCE in request:
        return request[RESOURCE]
    path = request.match_info
    if "operationId" in path:
        return f"operations/{path['operationId']}"
    if "resourceId" in path and request.path.startswith("/resource-manager/"):
        return f"folders/{path['resourceId']}"
    image_id = path.get("imageId") or path.get("resourceId")
    return f"images/{image_id}" if image_id else ""


@web.middleware
async def audit(request: web.Request, handler: Handler) -> web.StreamResponse:
    method = method_of(request)
    if method is None:
        return await handler(request)
    result = "CANCELLED"  # the errors middleware answers every failure; only cancellation escapes
    try:
        response = await handler(request)
        failure = request.get(FAILURE)
        result = "ok" if failure is None else failure.name
        return response
    finally:
        log.info(
            "audit",
            subject=context_of(request).subject,
            method=method,
            resource=resource_of(request),
            result=result,
        )
