"""Hostile source URLs through the API, with a live worker behind the gateway: what is known
without DNS (scheme, credentials, an address spelled in the host, however spelled) is refused
with 400 before anything is stored; what only DNS or a redirect reveals ends the operation in
ERROR with a precise message. Either way no READY image, no blob, no byte fetched from where it
must not be. A source that answers in a way no retry can mend (a malformed response, a
trickle) ends the operation after one request.

The image server listens on 127.0.0.1; the operator allow-lists it by the name `localhost` only,
so every other spelling of a loopback address stays blocked."""

import asyncio
import collections
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpServer

from contracts.errors import Code
from gateway.app import create_app
from support.auth import bearer
from support.auth import gateway_settings as auth_settings
from support.images import HITS, IMAGES, serve_image
from tests.worker.conftest import Backend
from tests.worker.worker_testkit import WorkerFactory, wait_until

FOLDER = "b1ghostile"
ALLOWED = ("localhost",)
PRIVATE_HOST = "intranet.example"  # resolves (in these tests) to a private address


class Served:
    def __init__(self, app: web.Application, port: int) -> None:
        self.hits: collections.Counter[str] = app[HITS]
        self.port = port

    def url(self, path: str, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}{path}"


async def _hop(request: web.Request) -> web.Response:
    """`/hop/N?to=URL`: a chain of N redirects that ends at `to`."""
    request.app[HITS][request.path] += 1
    left = int(request.match_info["n"])
    target = request.query["to"]
    location = target if left == 0 else f"/hop/{left - 1}?to={target}"
    raise web.HTTPFound(location)


@pytest.fixture
async def served(images: Path, aiohttp_server: AiohttpServer) -> Served:
    app = web.Application()
    app[HITS], app[IMAGES] = collections.Counter(), images
    app.router.add_get("/img/{name}", serve_image)
    app.router.add_get("/hop/{n}", _hop)
    server = await aiohttp_server(app, host="127.0.0.1")
    return Served(app, server.port)  # type: ignore[arg-type]


@pytest.fixture
async def private_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """PRIVATE_HOST resolves to 10.0.0.7; every other name as usual."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host == PRIVATE_HOST:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port or 80))]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


@contextlib.asynccontextmanager
async def gateway_with_worker(
    backend: Backend, start_worker: WorkerFactory, **worker: Any
) -> AsyncIterator[TestClient[Any, Any]]:
    await start_worker(allowed_hosts=ALLOWED, **worker)
    settings = auth_settings(import_allowed_hosts=ALLOWED)
    app = await create_app(settings, backend.db, backend.bus)
    async with TestClient(TestServer(app), headers=bearer()) as client:
        yield client


@pytest.fixture
async def api(backend: Backend, start_worker: WorkerFactory) -> AsyncIterator[TestClient[Any, Any]]:
    async with gateway_with_worker(backend, start_worker) as client:
        yield client


async def create(api: TestClient[Any, Any], uri: str) -> tuple[int, dict[str, Any]]:
    response = await api.post("/compute/v1/images", json={"folderId": FOLDER, "uri": uri})
    return response.status, await response.json()


async def done(api: TestClient[Any, Any], operation_id: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        operation: dict[str, Any] = await (await api.get(f"/operations/{operation_id}")).json()
        return operation if operation["done"] else None

    result: dict[str, Any] = await wait_until(finished)
    return result


async def images_of_folder(api: TestClient[Any, Any]) -> list[dict[str, Any]]:
    body = await (await api.get("/compute/v1/images", params={"folderId": FOLDER})).json()
    return list(body.get("images", []))


async def test_the_allow_listed_source_imports(
    api: TestClient[Any, Any], served: Served, blob_files: Callable[[], list[Path]]
) -> None:
    """The control: the same server, by its allowed name, is fetched."""
    status, operation = await create(api, served.url("/img/data.qcow2"))
    assert status == 200, operation
    assert "error" not in await done(api, operation["id"])
    assert [image["status"] for image in await images_of_folder(api)] == ["READY"]
    assert len(blob_files()) == 1


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0x7f000001",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "[64:ff9b::7f00:1]",
]
OTHER_BLOCKED = {
    "10.0.0.5": "private",
    "192.168.1.1": "private",
    "172.16.0.1": "private",
    "[fc00::1]": "private",
    "169.254.10.1": "link-local",
    "[fe80::1]": "link-local",
    "169.254.169.254": "a cloud metadata address",
    "0.0.0.0": "unspecified",
    "224.0.0.1": "multicast",
    "100.64.0.1": "not globally routable",
}
NOT_URLS = {
    "ftp://localhost/disk.qcow2": "URL scheme 'ftp' is not supported",
    "gopher://localhost/": "URL scheme 'gopher' is not supported",
    "javascript:alert(1)": "URL scheme 'javascript' is not supported",
    "data:application/octet-stream;base64,AAAA": "URL scheme 'data' is not supported",
    "disk.qcow2": "URL scheme '(none)' is not supported",
    "http:///disk.qcow2": "URL has no host",
    "http://[::1/disk.qcow2": "URL is malformed",
    "http://1.2.3.4.5/disk.qcow2": "host '1.2.3.4.5' is not a valid address",
    "http://127.0.0.1./disk.qcow2": "host '127.0.0.1.' is not a valid address",
    "http://bad host/disk.qcow2": "host 'bad host' is malformed",
    "http://files..example/disk.qcow2": "host 'files..example' is malformed: each label",
    "http://localhost:0/disk.qcow2": "URL port 0 is not valid",
    "file:///etc/passwd": "file:// sources need KILN_IMPORT_ROOT",
    f"http://localhost/{'d' * 8192}.qcow2": "expected `str` of length <= 8192",
}


async def test_what_needs_no_dns_is_refused_before_anything_is_stored(
    api: TestClient[Any, Any],
    served: Served,
    backend: Backend,
    blob_files: Callable[[], list[Path]],
) -> None:
    cases: dict[str, str] = {
        served.url("/img/data.qcow2", host): "is loopback" for host in LOOPBACK_SPELLINGS
    }
    cases.update(
        {served.url("/img/data.qcow2", h): f"is {why}" for h, why in OTHER_BLOCKED.items()}
    )
    cases.update(NOT_URLS)
    cases[served.url("/img/data.qcow2").replace("//", "//user:pw@")] = "must not carry user"
    cases[served.url("/img/data.qcow2").replace("//", "//user@")] = "must not carry user"

    for uri, reason in cases.items():
        status, body = await create(api, uri)
        assert (status, body.get("code")) == (400, Code.INVALID_ARGUMENT), (uri, body)
        assert body["message"].startswith("uri: ") and reason in body["message"], (uri, body)

    assert await images_of_folder(api) == []
    async with backend.db.transaction() as conn:
        assert await conn.fetch("SELECT id FROM operations") == []
        assert await conn.fetch("SELECT seq FROM outbox") == []
    assert sum(served.hits.values()) == 0 and blob_files() == []


@pytest.mark.usefixtures("private_dns")
async def test_what_dns_or_a_redirect_reveals_ends_the_operation_in_error(
    api: TestClient[Any, Any], served: Served, blob_files: Callable[[], list[Path]]
) -> None:
    image = "/img/data.qcow2"
    cases = {
        served.url(image, PRIVATE_HOST): f"address 10.0.0.7 of host {PRIVATE_HOST} is private",
        served.url(f"/hop/2?to={served.url(image, '127.0.0.1')}"): (
            "address 127.0.0.1 of host 127.0.0.1 is loopback"
        ),
        served.url(f"/hop/3?to={served.url(image, PRIVATE_HOST)}"): (
            f"address 10.0.0.7 of host {PRIVATE_HOST} is private"
        ),
        served.url("/hop/1?to=http://169.254.169.254/latest/meta-data/"): (
            "address 169.254.169.254 of host 169.254.169.254 is a cloud metadata address"
        ),
        served.url("/hop/1?to=file:///etc/passwd"): (
            "URL scheme 'file' is not supported (use http, https)"
        ),
    }
    for uri, message in cases.items():
        status, operation = await create(api, uri)
        assert status == 200, (uri, operation)
        ended = await done(api, operation["id"])
        assert ended["error"]["message"] == message, (uri, ended)
        assert ended["error"]["code"] in (Code.PERMISSION_DENIED, Code.FAILED_PRECONDITION)

    statuses = [image["status"] for image in await images_of_folder(api)]
    assert statuses == ["ERROR"] * len(cases)
    assert served.hits[image] == 0 and blob_files() == []
    assert served.hits["/hop/0"] == 4  # every chain was followed to its last hop


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def duplicate_length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nContent-Length: 512\r\n\r\n")
    writer.write(bytes(4096))


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A byte every 50 ms of a 1 MiB body, for 3 s at most: never idle, never done."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
    for _ in range(60):
        writer.write(b"\0")
        await writer.drain()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("handler", "code", "message"),
    [
        (
            duplicate_length,
            Code.INVALID_ARGUMENT,
            "source sent a malformed response: Duplicate Content-Length",
        ),
        (
            trickle,
            Code.DEADLINE_EXCEEDED,
            "source did not finish within the import deadline of 1 s",
        ),
    ],
)
async def test_a_source_no_retry_can_mend_ends_the_operation_after_one_request(
    backend: Backend,
    start_worker: WorkerFactory,
    blob_files: Callable[[], list[Path]],
    handler: Handler,
    code: Code,
    message: str,
) -> None:
    requests = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        requests += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            await handler(reader, writer)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, gateway_with_worker(backend, start_worker, deadline=1.0) as api:
        status, operation = await create(api, f"http://localhost:{port}/disk.raw")
        assert status == 200, operation
        ended = await done(api, operation["id"])

    assert (ended["error"]["code"], ended["error"]["message"]) == (code, message)
    assert requests == 1 and blob_files() == []
