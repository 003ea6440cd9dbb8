"""`/openapi.json` and a browsable docs page (`/docs`) over it."""

import msgspec
from aiohttp import web
from swagger_ui import api_doc

from contracts.openapi import document


def setup(app: web.Application) -> None:
    body = msgspec.json.encode(document())

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)
    # swagger-ui-py resolves its config URL below its own prefix.
    app.router.add_get("/docs/openapi.json", openapi)
    api_doc(app, config_rel_url="/openapi.json", url_prefix="/docs", title="Kiln Image API")
