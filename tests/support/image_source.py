"""Distinct qcow2 images made by qemu-img, served from 127.0.0.1 at a throttled rate so that
imports stay in flight long enough for a test to break something under them."""

import asyncio
import collections
import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from aiohttp import web

KiB = 1 << 10
MiB = 1 << 20


def make_qcow2_images(directory: Path, count: int, random_bytes: int = 512 * KiB) -> list[str]:
    """`count` qcow2 images of 1 MiB virtual size, each with different random content."""
    assert shutil.which("qemu-img"), "qemu-img missing: apt-get install qemu-utils"
    names = []
    for index in range(count):
        raw, name = directory / f"img-{index:02d}.raw", f"img-{index:02d}.qcow2"
        raw.write_bytes(os.urandom(random_bytes) + bytes(MiB - random_bytes))
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(directory / name)],
            check=True,
            capture_output=True,
        )
        raw.unlink()
        names.append(name)
    return names


class ImageSource:
    """`GET /img/<name>` streams the file in `chunk`-byte pieces at about `rate` bytes/s per
    request. `GET /trickle/<name>` sends 1 KiB every 0.2 s (never idle long enough for a fetch
    to time out) until the test sets `release`, then the rest at once. Counts what a test
    needs to observe: streams running, started, finished, broken."""

    def __init__(self, directory: Path, *, rate: int = 512 * KiB, chunk: int = 32 * KiB):
        self.directory = directory
        self.rate = rate
        self.chunk = chunk
        self.port = 0
        self.active = 0
        self.started: collections.Counter[str] = collections.Counter()
        self.finished: collections.Counter[str] = collections.Counter()
        self.broken: collections.Counter[str] = collections.Counter()
        self.trickling = 0
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def url(self, name: str, path: str = "img") -> str:
        return f"http://127.0.0.1:{self.port}/{path}/{name}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/img/{name}", self._serve)
        app.router.add_get("/trickle/{name}", self._trickle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name, data = self._file(request)
        response = await self._prepare(request, name, len(data))
        try:
            for offset in range(0, len(data), self.chunk):
                await response.write(data[offset : offset + self.chunk])
                # Throttling the stream (not synchronisation): keeps imports in flight.
                await asyncio.sleep(self.chunk / self.rate)
            await response.write_eof()
            self.finished[name] += 1
        except ConnectionError:
            self.broken[name] += 1  # the importing worker went away mid-stream
        finally:
            self.active -= 1
        return response

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        name, data = self._file(request)
        response = await self._prepare(request, name, len(data))
        self.trickling += 1
        sent = 0
        try:
            while not self.release.is_set() and sent < len(data) - KiB:
                await response.write(data[sent : sent + KiB])
                sent += KiB
                # Trickling until released: slow, but never silent for long.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), 0.2)
            await response.write(data[sent:])
            await response.write_eof()
            self.finished[name] += 1
        except ConnectionError:
            self.broken[name] += 1
        finally:
            self.trickling -= 1
            self.active -= 1
        return response

    def _file(self, request: web.Request) -> tuple[str, bytes]:
        name = request.match_info["name"]
        path = self.directory / name
        if not path.is_file():
            raise web.HTTPNotFound()
        return name, path.read_bytes()

    async def _prepare(self, request: web.Request, name: str, size: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        self.started[name] += 1
        self.active += 1
        try:
            await response.prepare(request)
        except BaseException:
            self.active -= 1
            raise
        return response
