"""Request ids, structured request logs and the contract's error shape for every failure."""

import re
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from api.context import RequestContext
from bus.base import BusUnavailable
from contracts.errors import HTTP_STATUS, ApiError, Code
from contracts.operations import RequestInfo, Status
from gateway.context import context_of, set_context
from gateway.http import respond
from gateway.keys import SETTINGS
from store.db import Contention, StoreUnavailable

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# aiohttp's own HTTP errors (unknown path, wrong verb, body too large) in the contract's codes.
_HTTP_CODES = {404: Code.NOT_FOUND, 405: Code.UNIMPLEMENTED, 413: Code.INVALID_ARGUMENT}
# The code of the error a request answered with (read by the audit log).
FAILURE = web.RequestKey("failure", Code)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
    set_context(request, RequestContext(request_id=request_id))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response = await handler(request)
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, Code.UNKNOWN)
        response = error_response(request, code, _http_message(request, exc))
        if exc.status == 405:
            # A verb the path lacks is the client's mistake: 405 with Allow, not the 501
            # the gRPC table gives UNIMPLEMENTED (no method of the contract is unimplemented).
            response.set_status(405)
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except (StoreUnavailable, Contention, BusUnavailable) as exc:
        # A transaction that lost a deadlock or a serialization race outside the group
        # commits (which run it again themselves) is a "try again", not a server fault.
        log.warning("dependency unavailable", error=str(exc))
        return error_response(request, Code.UNAVAILABLE, "service temporarily unavailable")
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        return error_response(request, Code.INTERNAL, "internal error")


# Messages quote what the caller sent (a field name, an id): its control characters escaped.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def _printable(message: str) -> str:
    return message.translate(_CONTROLS)


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"no such resource path: {request.path}"
    if exc.status == 405:
        return f"method {request.method} is not supported on {request.path}"
    if exc.status == 413:
        return f"request body is larger than {request.app[SETTINGS].max_body_bytes} bytes"
    return exc.reason


def error_response(request: web.Request, code: Code, message: str) -> web.Response:
    request[FAILURE] = code
    request_id = context_of(request).request_id
    status = Status(
        code=int(code), message=_printable(message), details=[RequestInfo(request_id=request_id)]
    )
    return respond(status, HTTP_STATUS[code])
