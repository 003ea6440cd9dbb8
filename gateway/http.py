"""Reading requests into contract Structs and writing Structs back as JSON."""

import hashlib
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from api.context import RequestContext
from contracts.codec import camel, decode_json, parse
from contracts.errors import InvalidArgument
from store.idempotency import Claim

T = TypeVar("T", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()


def respond(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


async def body_request(
    request: web.Request, message_type: type[T], path: dict[str, str] | None = None
) -> T:
    """A JSON body plus the fields bound in the URL path (which the body may not repeat);
    such a method takes nothing in the query string."""
    if (key := next(iter(request.query), None)) is not None:
        raise InvalidArgument(f"{key}: unknown query parameter (this method takes a JSON body)")
    raw = decode_json(await request.read()) if request.can_read_body else {}
    if not isinstance(raw, dict):
        raise InvalidArgument("request body must be a JSON object")
    return parse(_with_path(raw, path or {}), message_type)


def query_request(
    request: web.Request, message_type: type[T], path: dict[str, str] | None = None
) -> T:
    """Query parameters (each at most once) plus the fields bound in the URL path."""
    raw: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise InvalidArgument(f"{key}: given more than once")
        raw[key] = values[0]
    return parse(_with_path(raw, path or {}), message_type)


def _with_path(raw: dict[str, Any], path: dict[str, str]) -> dict[str, Any]:
    for name in path:
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
        for spelling in {name, snake, camel(snake)}:
            if spelling in raw:
                raise InvalidArgument(f"{spelling}: is taken from the URL path, not the request")
    return {**raw, **path}


_key_encoder = msgspec.json.Encoder()
MAX_KEY_LENGTH = 128


def idempotency_claim(
    request: web.Request, context: RequestContext, parsed: msgspec.Struct
) -> Claim | None:
    """The caller's Idempotency-Key, fingerprinted with the request it came with."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"Idempotency-Key: must be 1 to {MAX_KEY_LENGTH} characters")
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(_key_encoder.encode(parsed))
    return Claim(subject=context.subject, key=key, fingerprint=digest.hexdigest())
