"""Who is calling and which request this is: built once per request by the middleware.

Authentication (gateway/auth/authentication.py) fills `subject`, `admin` and `expires_at`; handlers
only ever read the context."""

import msgspec
from aiohttp import web


class RequestContext(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    subject: str = ""  # the token's `sub`; empty until authenticated
    admin: bool = False  # one of KILN_ADMINS: admin of every folder
    expires_at: float = 0.0  # the token's `exp` (seconds since the epoch); 0 until then


_CONTEXT = web.RequestKey("context", RequestContext)


def set_context(request: web.Request, context: RequestContext) -> None:
    request[_CONTEXT] = context


def context_of(request: web.Request) -> RequestContext:
    context: RequestContext = request[_CONTEXT]
    return context
