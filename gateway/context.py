"""Who is calling and which request this is: built once per request by the middleware.

Authentication will fill `subject`; handlers only ever read the context.
"""

import msgspec
from aiohttp import web

ANONYMOUS = "anonymous"


class RequestContext(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    subject: str = ANONYMOUS


_CONTEXT = web.RequestKey("context", RequestContext)


def set_context(request: web.Request, context: RequestContext) -> None:
    request[_CONTEXT] = context


def context_of(request: web.Request) -> RequestContext:
    context: RequestContext = request[_CONTEXT]
    return context
