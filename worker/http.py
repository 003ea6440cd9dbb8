"""A worker's side port: `/metrics`, `/healthz` and `/readyz` for scrapers and orchestrators.

`/healthz` answers 200 while the event loop runs. `/readyz` answers 200 while the store answers a
`SELECT 1`, the broker is connected, the worker consumes, its blob store has room and no shutdown
began; 503 otherwise.
"""

import asyncio
from collections.abc import Callable

import msgspec
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from bus.base import Bus
from contracts.health import readiness
from store.db import Database
from store.probe import reachable
from worker.blobs import BlobStore

STORE_TIMEOUT = 2.0  # seconds a readiness probe waits for the store

DB = web.AppKey("db", Database)
BUS = web.AppKey("bus", Bus)
DRAINING = web.AppKey("draining", asyncio.Event)
CONSUMING: web.AppKey[Callable[[], bool]] = web.AppKey("consuming")
BLOBS = web.AppKey("blobs", BlobStore)

_encoder = msgspec.json.Encoder()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    draining = app[DRAINING].is_set()
    store = not draining and await reachable(app[DB], STORE_TIMEOUT)
    broker = app[BUS].connected and app[CONSUMING]()
    blobs = await app[BLOBS].writable()
    report = readiness(
        store=store, broker=broker, draining=draining, blobs=blobs, needs_broker=True
    )
    return web.Response(
        body=_encoder.encode(report),
        status=200 if report.ready else 503,
        content_type="application/json",
    )


def create_side_app(
    db: Database,
    bus: Bus,
    blobs: BlobStore,
    draining: asyncio.Event,
    consuming: Callable[[], bool],
) -> web.Application:
    """The side port's app; `draining` is set when shutdown starts, `consuming` tells whether
    the worker takes commands."""
    app = web.Application()
    app[DB], app[BUS], app[DRAINING], app[CONSUMING] = db, bus, draining, consuming
    app[BLOBS] = blobs
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler())
    return app
