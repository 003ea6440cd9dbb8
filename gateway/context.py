"""The request's RequestContext (api/context.py), kept on the aiohttp request: set once by the
middleware and authentication (gateway/auth/authentication.py), read by the handlers."""

from aiohttp import web

from api.context import RequestContext

_CONTEXT = web.RequestKey("context", RequestContext)


def set_context(request: web.Request, context: RequestContext) -> None:
    request[_CONTEXT] = context


def context_of(request: web.Request) -> RequestContext:
    context: RequestContext = request[_CONTEXT]
    return context
