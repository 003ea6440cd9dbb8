"""OpenAPI 3.1 document generated from the contract Structs; only the paths are written here."""

from typing import Any

import msgspec

from contracts import access, images
from contracts.operations import (
    GetOperationRequest,
    ListImageOperationsResponse,
    Operation,
    Status,
)

_REF = "#/components/schemas/{name}"
# Every method needs `Authorization: Bearer <JWT>` (HS256, or RS256/ES256 from a JWKS).
BEARER = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
# (verb, path, operationId, request type, where its fields go, response type)
METHODS: list[tuple[str, str, str, type, str, type]] = [
    (
        "get",
        "/compute/v1/images/{imageId}",
        "Image_Get",
        images.GetImageRequest,
        "query",
        images.Image,
    ),
    (
        "get",
        "/compute/v1/images:latestByFamily",
        "Image_GetLatestByFamily",
        images.GetImageLatestByFamilyRequest,
        "query",
        images.Image,
    ),
    (
        "get",
        "/compute/v1/images",
        "Image_List",
        images.ListImagesRequest,
        "query",
        images.ListImagesResponse,
    ),
    ("post", "/compute/v1/images", "Image_Create", images.CreateImageRequest, "body", Operation),
    (
        "patch",
        "/compute/v1/images/{imageId}",
        "Image_Update",
        images.UpdateImageRequest,
        "body",
        Operation,
    ),
    (
        "delete",
        "/compute/v1/images/{imageId}",
        "Image_Delete",
        images.DeleteImageRequest,
        "query",
        Operation,
    ),
    (
        "get",
        "/compute/v1/images/{imageId}/operations",
        "Image_ListOperations",
        images.ListImageOperationsRequest,
        "query",
        ListImageOperationsResponse,
    ),
    (
        "get",
        "/compute/v1/images/{resourceId}:listAccessBindings",
        "Image_ListAccessBindings",
        access.ListAccessBindingsRequest,
        "query",
        access.ListAccessBindingsResponse,
    ),
    (
        "post",
        "/compute/v1/images/{resourceId}:setAccessBindings",
        "Image_SetAccessBindings",
        access.SetAccessBindingsRequest,
        "body",
        Operation,
    ),
    (
        "post",
        "/compute/v1/images/{resourceId}:updateAccessBindings",
        "Image_UpdateAccessBindings",
        access.UpdateAccessBindingsRequest,
        "body",
        Operation,
    ),
    (
        "get",
        "/resource-manager/v1/folders/{resourceId}:listAccessBindings",
        "Folder_ListAccessBindings",
        access.ListAccessBindingsRequest,
        "query",
        access.ListAccessBindingsResponse,
    ),
    (
        "post",
        "/resource-manager/v1/folders/{resourceId}:setAccessBindings",
        "Folder_SetAccessBindings",
        access.SetAccessBindingsRequest,
        "body",
        Operation,
    ),
    (
        "post",
        "/resource-manager/v1/folders/{resourceId}:updateAccessBindings",
        "Folder_UpdateAccessBindings",
        access.UpdateAccessBindingsRequest,
        "body",
        Operation,
    ),
    ("get", "/operations/{operationId}", "Operation_Get", GetOperationRequest, "query", Operation),
    (
        "get",
        "/operations/{operationId}:cancel",
        "Operation_Cancel",
        GetOperationRequest,
        "query",
        Operation,
    ),
    (
        "post",
        "/operations/{operationId}:cancel",
        "Operation_CancelPost",
        GetOperationRequest,
        "query",
        Operation,
    ),
]


def _fields(message_type: type) -> list[msgspec.structs.FieldInfo]:
    return list(msgspec.structs.fields(message_type))


def _parameters(message_type: type, path: str, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    props = schemas[message_type.__name__]["properties"]
    required = set(schemas[message_type.__name__].get("required", []))
    params = []
    for field in _fields(message_type):
        where = "path" if "{" + field.encode_name + "}" in path else "query"
        params.append(
            {
                "name": field.encode_name,
                "in": where,
                "required": where == "path" or field.encode_name in required,
                "schema": props[field.encode_name],
            }
        )
    return params


def _body(message_type: type, path: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """The request body schema: the message minus the fields bound in the path."""
    schema = dict(schemas[message_type.__name__])
    in_path = {f.encode_name for f in _fields(message_type) if "{" + f.encode_name + "}" in path}
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in in_path}
    schema["required"] = [k for k in schema.get("required", []) if k not in in_path]
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _operation(
    row: tuple[str, str, str, type, str, type], schemas: dict[str, Any]
) -> dict[str, Any]:
    _, path, operation_id, request_type, placement, response_type = row
    spec: dict[str, Any] = {
        "operationId": operation_id,
        "responses": {
            "200": _json_response(response_type),
            "default": {**_json_response(Status), "description": "error"},
        },
    }
    if placement == "body":
        spec["parameters"] = _path_only(request_type, path, schemas)
        spec["requestBody"] = _body(request_type, path, schemas)
    else:
        spec["parameters"] = _parameters(request_type, path, schemas)
    return spec


def _path_only(message_type: type, path: str, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in _parameters(message_type, path, schemas) if p["in"] == "path"]


def _json_response(message_type: type) -> dict[str, Any]:
    ref = {"$ref": _REF.format(name=message_type.__name__)}
    return {"description": "OK", "content": {"application/json": {"schema": ref}}}


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    types = {row[3] for row in METHODS} | {row[5] for row in METHODS} | {Status}
    _, schemas = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template=_REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for row in METHODS:
        paths.setdefault(row[1], {})[row[0]] = _operation(row, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kiln Image API", "version": "v1"},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": BEARER}},
        "security": [{"bearer": []}],
    }
