"""Authentication: every API call carries `Authorization: Bearer <JWT>`
(gateway/auth/bearer_tokens.py); its `sub` becomes the request's subject, so idempotency keys,
`createdBy`, the audit log and every permission check are per caller. Probes, `/metrics` and the
API documentation are open.

A missing or bad token answers 401 UNAUTHENTICATED (code 16) in the contract's error shape."""

import msgspec
import structlog
from aiohttp import web

from contracts.errors import Code, Unauthenticated
from gateway.auth.bearer_tokens import TokenVerifier
from gateway.auth.jwks import JwksKeys
from gateway.context import context_of, set_context
from gateway.health import PUBLIC_PATHS
from gateway.keys import SETTINGS, TOKENS
from gateway.middleware import Handler, error_response

_OPEN = frozenset({*PUBLIC_PATHS, "/openapi.json", "/docs"})
_OPEN_PREFIX = "/docs/"
_CHALLENGE = 'Bearer realm="kiln"'


def is_public(path: str) -> bool:
    return path in _OPEN or path.startswith(_OPEN_PREFIX)


def bearer_token(header: str | None) -> str:
    if not header:
        raise Unauthenticated("missing Authorization: Bearer token")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated("Authorization header must be 'Bearer <token>'")
    return token


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_public(request.path):
        return await handler(request)
    try:
        token = bearer_token(request.headers.get("Authorization"))
        verified = await request.app[TOKENS].verify(token)
    except Unauthenticated as exc:
        response = error_response(request, Code.UNAUTHENTICATED, exc.message)
        response.headers["WWW-Authenticate"] = _CHALLENGE
        return response
    subject = verified.subject
    context = msgspec.structs.replace(
        context_of(request),
        subject=subject,
        admin=subject in request.app[SETTINGS].admins,
        expires_at=verified.expires_at,
    )
    set_context(request, context)
    structlog.contextvars.bind_contextvars(subject=subject)
    return await handler(request)


def setup(app: web.Application) -> None:
    """The token verifier of `app[SETTINGS]`; its JWKS client closes with the app."""
    settings = app[SETTINGS]
    jwks = JwksKeys(settings.jwks_url) if settings.jwks_url else None
    app[TOKENS] = TokenVerifier(
        settings.token_secret, jwks, audience=settings.jwt_audience, issuer=settings.jwt_issuer
    )
    app.on_cleanup.append(_close)


async def _close(app: web.Application) -> None:
    await app[TOKENS].close()
