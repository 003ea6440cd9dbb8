"""Liveness and readiness of the gateway, and the paths that need no authentication.

`/healthz` answers 200 while the event loop runs. `/readyz` answers 200 while the store answers
a `SELECT 1` and no shutdown began; 503 otherwise, so that a load balancer stops sending
requests before the gateway stops taking them. A broker outage shows as `"broker": false` but
leaves the gateway ready: its writes wait in the outbox for the broker.
"""

import asyncio

from aiohttp import web

from contracts.health import readiness
from gateway.http import respond
from gateway.keys import BUS, DB, DRAINING
from gateway.metrics import serve_metrics
from store.probe import reachable

# Served to anyone: probes and scrapers carry no token. Authentication exempts these paths.
PUBLIC_PATHS: tuple[str, ...] = ("/healthz", "/readyz", "/metrics")
STORE_TIMEOUT = 2.0  # seconds a readiness probe waits for the store

_ALIVE = {"status": "ok"}


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(_ALIVE)


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    draining = app[DRAINING].is_set()
    store = not draining and await reachable(app[DB], STORE_TIMEOUT)
    connected = app[BUS].connected
    report = readiness(store=store, broker=connected, draining=draining, needs_broker=False)
    return respond(report, 200 if report.ready else 503)


def setup(app: web.Application) -> None:
    """Add the probes and `/metrics`; `app[DRAINING]` is what shutdown sets."""
    app[DRAINING] = asyncio.Event()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", serve_metrics)
