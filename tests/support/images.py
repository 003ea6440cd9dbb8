"""Image files made by qemu-img, and an aiohttp handler serving them while counting requests."""

import collections
import shutil
import subprocess
from pathlib import Path

from aiohttp import web

HITS = web.AppKey("hits", collections.Counter)
IMAGES = web.AppKey("images", Path)


def qemu_img(*args: str) -> None:
    assert shutil.which("qemu-img"), "qemu-img missing: apt-get install qemu-utils"
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


async def serve_image(request: web.Request) -> web.StreamResponse:
    """`/{name}` from the app's IMAGES directory; 404 for anything else."""
    request.app[HITS][request.path] += 1
    path = request.app[IMAGES] / request.match_info["name"]
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)
