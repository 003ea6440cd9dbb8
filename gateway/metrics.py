"""Request metrics and request log lines, and the `/metrics` handler.

Series are labelled by the route template (`/compute/v1/images/{imageId}`), never the raw path,
so that their number stays bounded whatever clients send.
"""

import asyncio
import time

import structlog
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from gateway.middleware import Handler
from runtime.metrics import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
)

log = structlog.get_logger(__name__)

serve_metrics = make_aiohttp_handler()
UNMATCHED = "unmatched"  # the route of a request no route matched (404, 405)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CLIENT_CLOSED = 499  # the client went away before the answer (nginx's convention)
# Path parameters bound to every log line of the request, under the names workers use.
_PATH_IDS = {"imageId": "image_id", "resourceId": "resource_id", "operationId": "operation_id"}
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})  # probes: counted, not logged


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def observe_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request; one `http.request` log line each (probes excepted)."""
    ids = {_PATH_IDS[k]: v for k, v in request.match_info.items() if k in _PATH_IDS}
    structlog.contextvars.bind_contextvars(**ids)
    started, status = time.perf_counter(), 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        _observe(request, status, time.perf_counter() - started)


def _observe(request: web.Request, status: int, elapsed: float) -> None:
    method = request.method if request.method in METHODS else "other"
    labels = {"method": method, "route": route_template(request), "status": str(status)}
    HTTP_REQUESTS.labels(**labels).inc()
    HTTP_REQUEST_DURATION.labels(**labels).observe(elapsed)
    if request.path not in _QUIET:
        log.info("http.request", **labels, duration_ms=round(elapsed * 1000, 2))
