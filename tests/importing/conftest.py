"""Fixtures for the import pipeline: images made by qemu-img, an HTTP source on 127.0.0.1 that
counts its requests, a raw socket server for broken responses, and a guard that fails any test
trying to connect beyond the loopback range."""

import asyncio
import collections
import ipaddress
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from support import hostile_images
from support.images import HITS, IMAGES, qemu_img, serve_image
from worker.blobs import FileBlobStore
from worker.errors import ImportRefused
from worker.importing.fetch import FetchPolicy, open_source

MiB = 1 << 20

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Fetch = Callable[[str, FetchPolicy], Awaitable[bytes]]
Refusal = Callable[[str, FetchPolicy], Awaitable[ImportRefused]]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused address must never be connected to, and no test may leave this machine."""
    real = socket.socket.connect

    def connect(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]  # type: ignore[index]
            if not ipaddress.ip_address(host).is_loopback:
                raise AssertionError(f"test tried to connect to {host}")
        real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)


def _make_images(d: Path) -> None:
    qemu_img("create", "-f", "qcow2", str(d / "empty.qcow2"), "16M")
    qemu_img("create", "-f", "qcow2", str(d / "huge.qcow2"), "5T")
    (d / "data.raw").write_bytes(bytes(MiB) + os.urandom(MiB) + bytes(2 * MiB))
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(d / "data.raw"), str(d / "data.qcow2"))
    qemu_img("create", "-f", "vmdk", str(d / "sparse.vmdk"), "32M")
    qemu_img(
        "create", "-f", "vmdk", "-o", "subformat=streamOptimized", str(d / "stream.vmdk"), "8M"
    )
    qemu_img("create", "-f", "raw", str(d / "zero.raw"), "8M")
    _make_hostile(d)


def _make_hostile(d: Path) -> None:
    qemu_img("create", "-f", "qcow2", "-b", "empty.qcow2", "-F", "qcow2", str(d / "backing.qcow2"))
    qemu_img(
        "create", "-f", "qcow2", "-o", f"data_file={d / 'ext.bin'}", str(d / "datafile.qcow2"), "1M"
    )
    qemu_img(
        "create", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", str(d / "split.vmdk"), "4M"
    )
    qemu_img("create", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(d / "flat.vmdk"), "4M")
    qemu_img("create", "-f", "vpc", str(d / "disk.vhd"), "4M")
    for name in ("version.qcow2", "twice.qcow2", "clusters.qcow2"):
        shutil.copy(d / "empty.qcow2", d / name)
    patch(d / "version.qcow2", 4, (9).to_bytes(4, "big"))
    patch(d / "twice.qcow2", 510, b"\x55\xaa")  # also an MBR boot signature
    patch(d / "clusters.qcow2", 20, (40).to_bytes(4, "big"))
    qcow2 = (d / "empty.qcow2").read_bytes()
    (d / "truncated.qcow2").write_bytes(qcow2[:1024])
    (d / "stub.qcow2").write_bytes(qcow2[:100])
    qemu_img("create", "-f", "vmdk", str(d / "desc.vmdk"), "4M")
    patch(d / "desc.vmdk", 28, (9).to_bytes(8, "little"))  # descriptor sector
    qemu_img("create", "-f", "vmdk", str(d / "abs.vmdk"), "4M")
    vmdk = (d / "abs.vmdk").read_bytes()
    (d / "abs.vmdk").write_bytes(vmdk.replace(b'"abs.vmdk"', b'"/etc/pw"'))
    _make_external(d)
    (d / "odd.raw").write_bytes(bytes(1000))
    (d / "page.html").write_text("<html><body>not a disk</body></html>" * 100)
    (d / "sparse256.raw").touch()
    os.truncate(d / "sparse256.raw", 256 * MiB)


def _make_external(d: Path) -> None:
    """Files that make qemu open others: see support.hostile_images."""
    (d / "host-secret").write_bytes(b"host secret\n" * 256)
    hostile_images.flat_descriptor(d / "padded-flat.vmdk", d / "host-secret", padded=True)
    hostile_images.vmdk_with_parent(d / "child.vmdk", d / "sparse.vmdk")
    hostile_images.vmdk_with_parent_cid(d / "parent-cid.vmdk")
    hostile_images.vmdk_with_overlong_descriptor(d / "overlong.vmdk", "sparse.vmdk")
    qemu_img("create", "-f", "qcow", "-b", "empty.qcow2", "-F", "qcow2", str(d / "backing.qcow"))
    qemu_img("create", "-f", "qed", "-b", "empty.qcow2", "-F", "qcow2", str(d / "backing.qed"))
    hostile_images.sparse_claiming_descriptor(d / "sparse-claim.vmdk")
    (d / "notes.raw").write_bytes((b"plain text, nothing like a disk\n" * 32)[:1024])


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("images")
    _make_images(directory)
    return directory


@pytest.fixture
def blob_root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def blobs(blob_root: Path) -> FileBlobStore:
    return FileBlobStore(blob_root)


@pytest.fixture
def stored(blob_root: Path) -> Callable[[], list[Path]]:
    """Lists every file below the blob root: blobs and any temporary file left behind."""
    return lambda: sorted(p for p in blob_root.rglob("*") if p.is_file())


async def _status(request: web.Request) -> web.Response:
    request.app[HITS][request.path] += 1
    return web.Response(status=int(request.match_info["code"]))


async def _flaky(request: web.Request) -> web.StreamResponse:
    """503 for the first two requests, then the image."""
    request.app[HITS][request.path] += 1
    if request.app[HITS][request.path] <= 2:
        return web.Response(status=503)
    return web.FileResponse(request.app[IMAGES] / request.match_info["name"])


async def _redirect(request: web.Request) -> web.Response:
    request.app[HITS][request.path] += 1
    raise web.HTTPFound(request.query["to"])


async def _chain(request: web.Request) -> web.Response:
    request.app[HITS][request.path] += 1
    step = int(request.match_info["step"])
    target = f"/chain/{step + 1}" if step < 9 else "/img/zero.raw"
    raise web.HTTPMovedPermanently(target)


async def _loop(request: web.Request) -> web.Response:
    other = "b" if request.match_info["side"] == "a" else "a"
    raise web.HTTPTemporaryRedirect(f"/loop/{other}")


class Source:
    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.hits: collections.Counter[str] = server.app[HITS]
        self.port: int = server.port  # type: ignore[assignment]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def source(images: Path, aiohttp_server: AiohttpServer) -> Source:
    app = web.Application()
    app[HITS] = collections.Counter()
    app[IMAGES] = images
    app.router.add_get("/img/{name}", serve_image)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/flaky/{name}", _flaky)
    app.router.add_get("/redirect", _redirect)
    app.router.add_get("/chain/{step}", _chain)
    app.router.add_get("/loop/{side}", _loop)
    return Source(await aiohttp_server(app))


@pytest.fixture
def policy(images: Path) -> FetchPolicy:
    """Loopback allowed so the test source can be reached; fast retries."""
    return FetchPolicy(
        max_bytes=512 * MiB,
        allowed_hosts=("127.0.0.1",),
        import_root=images,
        idle_timeout=5.0,
        connect_timeout=2.0,
        retries=2,
        backoff_initial=0.01,
        backoff_max=0.05,
    )


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[str]]]:
    """Start a bare socket server that runs a handler after reading the request head."""
    servers: list[asyncio.Server] = []

    async def start(handler: RawHandler) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/image"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _fetch(url: str, policy: FetchPolicy) -> bytes:
    async with open_source(url, policy) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def _refusal(url: str, policy: FetchPolicy) -> ImportRefused:
    with pytest.raises(ImportRefused) as caught:
        await _fetch(url, policy)
    return caught.value


@pytest.fixture
def fetch() -> Fetch:
    """Reads a whole source through `open_source`."""
    return _fetch


@pytest.fixture
def refusal() -> Refusal:
    """Fetches a source that must be refused and returns the refusal."""
    return _refusal
