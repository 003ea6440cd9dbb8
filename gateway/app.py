"""The gateway's app factory."""

from collections.abc import AsyncIterator

from aiohttp import web

from api.create_batches import write_creates
from api.group_commit import GroupCommit
from api.mutating_calls import count_started
from api.pagination import PageTokens
from api.services import Services
from api.settings import GatewaySettings
from api.update_batches import write_updates
from bus.base import Bus
from bus.outbox_publisher import OutboxPublisher
from gateway import docs, health, image_routes, operations
from gateway.access import access_bindings
from gateway.audit import audit
from gateway.auth import authentication
from gateway.events import sse_stream
from gateway.keys import BUS, CREATES, DB, PAGE_TOKENS, PUBLISHER, SERVICES, SETTINGS, UPDATES
from gateway.metrics import observe_requests
from gateway.middleware import errors, request_context
from store import secrets_table
from store.db import Database
from store.outbox_table import SentMarker


async def create_app(settings: GatewaySettings, db: Database, bus: Bus) -> web.Application:
    """The API on an open database and a started bus (their owner closes them). Every call
    but the probes and the docs needs a bearer token; each mutating one is audited."""
    app = web.Application(
        middlewares=[request_context, observe_requests, audit, errors, authentication.authenticate],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[DB] = db
    app[BUS] = bus
    app[PAGE_TOKENS] = PageTokens(
        bytes.fromhex(await secrets_table.get_or_create(db, "page_tokens"))
    )
    app.cleanup_ctx.append(_outbox_publisher)
    authentication.setup(app)
    for table in (image_routes.routes, access_bindings.routes, operations.routes):
        app.add_routes(table)
    docs.setup(app)
    sse_stream.setup(app)  # /kiln/v1/events (Server-Sent Events)
    health.setup(app)  # /healthz, /readyz, /metrics
    return app


async def _outbox_publisher(app: web.Application) -> AsyncIterator[None]:
    """Publishes each request's outbox rows; marks them sent in batches, flushed at close."""
    marker = SentMarker(app[DB])
    app[PUBLISHER] = OutboxPublisher(app[BUS], marker)
    app[CREATES] = GroupCommit(app[DB], app[PUBLISHER], count_started, write_creates)
    app[UPDATES] = GroupCommit(app[DB], app[PUBLISHER], count_started, write_updates)
    app[SERVICES] = Services(app[DB], app[SETTINGS], app[CREATES], app[UPDATES])
    yield
    await app[CREATES].close()
    await app[UPDATES].close()
    await marker.close()
