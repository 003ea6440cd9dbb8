"""OpenAPI 3.1 document: component schemas generated from the contract Structs, the paths from
the table in contracts/openapi_methods.py. Patterns are ECMA-262 (JSON Schema's dialect)."""

from typing import Any

import msgspec

from contracts import enums
from contracts.base import portable
from contracts.errors import HTTP_STATUS, Code
from contracts.events import POSITION_PATTERN
from contracts.ids import portable_pattern
from contracts.images import SOURCE_ONE_OF, CreateImageRequest
from contracts.openapi_methods import LINKS, METHODS, TAGS, Method
from contracts.operations import Status

_REF = "#/components/schemas/{name}"
# Every method needs `Authorization: Bearer <JWT>` (HS256, or RS256/ES256 from a JWKS).
BEARER = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
# No string of the contract may hold NUL (contracts/codec.py): PostgreSQL text cannot.
NO_NUL = "^[^\\x00]*$"
MAX_IDEMPOTENCY_KEY = 128  # gateway/http.py
HEADERS = {
    "X-Request-Id": {
        "description": "The request's id, in logs and in error details: the caller's own"
        " X-Request-Id when it is 1-128 characters of [A-Za-z0-9._:-], else a new UUID.",
        "schema": {"type": "string"},
    },
    "WWW-Authenticate": {"description": "The bearer challenge.", "schema": {"type": "string"}},
}
PARAMETERS = {
    "X-Request-Id": {
        "name": "X-Request-Id",
        "in": "header",
        "description": "An id for this request, kept if it is 1-128 characters of"
        " [A-Za-z0-9._:-] (otherwise the server makes one); echoed in the response.",
        "schema": {"type": "string"},
    },
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "A key (a UUID v4, say) making the call safe to repeat: a repeat with the"
        " same key and request returns the operation the first one started; with another"
        " request, 409.",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
    },
    "Last-Event-ID": {
        "name": "Last-Event-ID",
        "in": "header",
        "description": "The id of the last event received: the stream resumes after it.",
        "schema": {"type": "string", "pattern": POSITION_PATTERN},
    },
}
# One event of the stream as an EventSource client parses it (gateway/events/sse_stream.py).
SSE_EVENT = {
    "type": "object",
    "description": "One Server-Sent Event; events carrying only an id move Last-Event-ID on.",
    "properties": {
        "event": {"type": "string", "description": "The CloudEvent's type, or kiln.error."},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "The CloudEvent (structured JSON); for kiln.error, a Status.",
        },
        "id": {"type": "string", "pattern": "^[0-9]{1,18}$", "description": "Its position."},
        "retry": {"type": "integer", "description": "Reconnection delay, milliseconds."},
    },
}
_ERRORS = {code: HTTP_STATUS[code] for code in Code if code in HTTP_STATUS}
# Rules across the fields of one message, which msgspec cannot generate.
_ACROSS_FIELDS = {CreateImageRequest.__name__: SOURCE_ONE_OF}


def _clean(node: Any) -> Any:
    """Portable patterns, NUL refused in every free-form string as the API does, and a $ref
    with constraints beside it put in an allOf (many tools ignore what sits beside a $ref)."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _clean(value) for key, value in node.items()}
    if "pattern" in node:
        node["pattern"] = portable(node["pattern"])
    elif node.get("type") == "string" and not {"enum", "format"} & node.keys():
        node["pattern"] = NO_NUL
    beside = {k: v for k, v in node.items() if k not in ("$ref", "description")}
    if "$ref" in node and beside:
        described = {"description": node["description"]} if "description" in node else {}
        return {**described, "allOf": [{"$ref": node["$ref"]}, beside]}
    return node


def _nullable(schemas: dict[str, Any], name: str, seen: set[str]) -> None:
    """null is "unset" for any optional field of a request message (proto3 JSON): say so in
    `name` and every message it holds."""
    if name in seen:
        return
    seen.add(name)
    schema = schemas[name]
    required = set(schema.get("required", []))
    for field, prop in schema.get("properties", {}).items():
        if field not in required and not _admits_null(prop):
            outer = {k: prop[k] for k in ("description", "default") if k in prop}
            inner = {k: v for k, v in prop.items() if k not in outer}
            schema["properties"][field] = {**outer, "anyOf": [inner, {"type": "null"}]}
    for ref in _refs(schema):
        _nullable(schemas, ref.rpartition("/")[2], seen)


def _admits_null(schema: dict[str, Any]) -> bool:
    return any(branch.get("type") == "null" for branch in schema.get("anyOf", []))


def _refs(node: Any) -> list[str]:
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    if not isinstance(node, dict):
        return []
    own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
    return own + [ref for value in node.values() for ref in _refs(value)]


def _schemas() -> dict[str, Any]:
    types = {m.request for m in METHODS} | {m.response for m in METHODS if m.response} | {Status}
    _, schemas = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template=_REF
    )
    for name, rule in _ACROSS_FIELDS.items():
        schemas[name] = {**schemas[name], **rule}
    for enum in (enums.ImageStatus, enums.OsType, enums.PciTopology, enums.AccessBindingAction):
        numbers = list(range(len(enum)))  # proto3 JSON parsers take an enum's number too
        schemas[enum.__name__]["enum"] = [*schemas[enum.__name__]["enum"], *numbers]
    schemas = _clean(schemas)
    seen: set[str] = set()
    for method in METHODS:
        if method.placement == "body":
            _nullable(schemas, method.request.__name__, seen)
    return dict(schemas)


def _parameter(method: Method, name: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    where = "path" if name in method.ids else "query"
    if where == "path":
        schema = {"type": "string", "pattern": portable_pattern(method.ids[name])}
        schema["description"] = method.ids[name].meaning
    parameter = {"name": name, "in": where, "required": where == "path" or required}
    if "description" in schema:
        parameter["description"] = schema["description"]
    return {**parameter, "schema": {k: v for k, v in schema.items() if k != "description"}}


def _parameters(method: Method, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    message = schemas[method.request.__name__]
    required = set(message.get("required", []))
    fields = [
        _parameter(method, name, schema, name in required)
        for name, schema in message["properties"].items()
        if method.placement == "query" or name in method.ids
    ]
    headers = ["X-Request-Id", *(["Idempotency-Key"] if method.writes else [])]
    if method.response is None:
        headers.append("Last-Event-ID")
    return fields + [{"$ref": f"#/components/parameters/{name}"} for name in headers]


def _body(method: Method, schemas: dict[str, Any]) -> dict[str, Any]:
    """The request body: the message minus the fields bound in the path. Optional when no
    field is required (an absent body is the empty message)."""
    schema = dict(schemas[method.request.__name__])
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in method.ids}
    schema["required"] = [k for k in schema.get("required", []) if k not in method.ids]
    content = {"application/json": {"schema": schema}}
    return {"required": bool(schema["required"]), "content": content}


def _error_statuses(method: Method) -> list[int]:
    """Every method may be malformed, unauthenticated, forbidden, fail or be unavailable; a
    path id may name nothing; a write may collide with another (or reuse a key)."""
    statuses = {400, 401, 403, 500, 503, *method.errors}
    statuses |= {404} if method.ids else set()
    statuses |= {409} if method.writes else set()
    return sorted(statuses)


def _error(status: int) -> dict[str, Any]:
    names = ", ".join(code.name for code, http in _ERRORS.items() if http == status)
    headers = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if status == 401:
        headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WWW-Authenticate"}
    schema = {"$ref": _REF.format(name=Status.__name__)}
    return {
        "description": f"{names}: the error as a google.rpc.Status.",
        "headers": headers,
        "content": {"application/json": {"schema": schema}},
    }


def _success(method: Method) -> dict[str, Any]:
    content: dict[str, Any] = {"text/event-stream": {"schema": SSE_EVENT}}
    if method.response is not None:
        ref = {"$ref": _REF.format(name=method.response.__name__)}
        content = {"application/json": {"schema": ref}}
    ok = {
        "description": "OK",
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        "content": content,
    }
    links = LINKS.get(method.operation_id, {})
    if links:
        ok["links"] = {
            target: {"operationId": target, "parameters": parameters}
            for target, parameters in links.items()
        }
    return ok


def _operation(method: Method, schemas: dict[str, Any]) -> dict[str, Any]:
    responses = {"200": _success(method)} | {
        str(status): _error(status) for status in _error_statuses(method)
    }
    spec: dict[str, Any] = {
        "operationId": method.operation_id,
        "tags": [method.tag],
        "summary": method.summary,
        "description": method.description,
        "parameters": _parameters(method, schemas),
        "responses": responses,
    }
    if method.placement == "body":
        spec["requestBody"] = _body(method, schemas)
    return spec


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    schemas = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        paths.setdefault(method.path, {})[method.verb] = _operation(method, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kiln Image API",
            "version": "v1",
            "description": "The Compute Cloud Image REST API, self-hosted. Requests and responses"
            " are proto3 JSON; every failure is a google.rpc.Status with the matching HTTP status.",
        },
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": PARAMETERS,
            "headers": HEADERS,
            "securitySchemes": {"bearer": BEARER},
        },
        "security": [{"bearer": []}],
    }
