"""Fixtures that run every worker behaviour test on (MemoryBus + SQLite) and on (RabbitMQ in a
vhost of its own + PostgreSQL in a database of its own), with real images made by qemu-img and
served over HTTP from 127.0.0.1.

The RabbitMQ and PostgreSQL variants fail (never skip) when those services are missing."""

import asyncio
import collections
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import structlog
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from structlog.testing import LogCapture

from bus import Bus, MemoryBus, RabbitBus
from store import Database, open_database
from support import hostile_images
from support.images import HITS, IMAGES, qemu_img, serve_image
from tests.worker.worker_testkit import (
    CLOSED,
    FOLDER,
    OTHER_FOLDER,
    RELEASE,
    STREAMING,
    EventLog,
    GatewayDouble,
    MiB,
    Source,
    WorkerFactory,
)
from worker.config import WorkerConfig
from worker.service import Worker

BROKER = "amqp://guest:guest@127.0.0.1:5672"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


# --- images and their HTTP source -------------------------------------------------------------


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("worker-images")
    (d / "data.raw").write_bytes(bytes(MiB) + os.urandom(MiB) + bytes(2 * MiB))
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(d / "data.raw"), str(d / "data.qcow2"))
    qemu_img("create", "-f", "vmdk", str(d / "sparse.vmdk"), "32M")
    qemu_img("create", "-f", "qcow2", str(d / "empty.qcow2"), "16M")
    qemu_img("create", "-f", "qcow2", "-b", "empty.qcow2", "-F", "qcow2", str(d / "backing.qcow2"))
    (d / "host-secret").write_bytes(b"host secret\n" * 256)
    hostile_images.flat_descriptor(d / "padded-flat.vmdk", d / "host-secret", padded=True)
    hostile_images.vmdk_with_parent(d / "child.vmdk", d / "sparse.vmdk")
    hostile_images.vmdk_with_overlong_descriptor(d / "overlong.vmdk", "sparse.vmdk")
    hostile_images.sparse_claiming_descriptor(d / "sparse-claim.vmdk")
    return d


@pytest.fixture(scope="session")
def disk_sources(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KILN_DISK_SOURCE_DIR: FOLDER's disks `data.qcow2` and `same-id` (4 MiB), its snapshot
    `same-id` (16 MiB), OTHER_FOLDER's disk `theirs.vmdk` (32 MiB), and FOLDER's disk
    `link-to-theirs`, a symbolic link to that one."""
    root = tmp_path_factory.mktemp("disk-sources")
    theirs = f"{OTHER_FOLDER}/disks/theirs.vmdk"
    layout = {
        f"{FOLDER}/disks/data.qcow2": "data.qcow2",
        f"{FOLDER}/disks/same-id": "data.qcow2",
        f"{FOLDER}/snapshots/same-id": "empty.qcow2",
        theirs: "sparse.vmdk",
    }
    for target, image in layout.items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(images / image, root / target)
    (root / FOLDER / "disks" / "link-to-theirs").symlink_to(root / theirs)
    return root


SLOW_PART = 2 * MiB


async def _slow(request: web.Request) -> web.StreamResponse:
    request.app[HITS][request.path] += 1
    data = (request.app[IMAGES] / request.match_info["name"]).read_bytes()
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = len(data)
    await response.prepare(request)
    # More than a blob writer buffers in memory, so that partial bytes reach the disk.
    await response.write(data[:SLOW_PART])
    request.app[STREAMING].set()
    try:
        await request.app[RELEASE].wait()
    except asyncio.CancelledError:  # the test server cancels a handler whose client left
        request.app[CLOSED].set()
        raise
    await response.write(data[SLOW_PART:])
    return response


@pytest.fixture
async def source(images: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[Source]:
    app = web.Application()
    app[HITS], app[IMAGES] = collections.Counter(), images
    app[STREAMING], app[RELEASE], app[CLOSED] = asyncio.Event(), asyncio.Event(), asyncio.Event()
    app.router.add_get("/img/{name}", serve_image)
    app.router.add_get("/slow/{name}", _slow)
    server = await aiohttp_server(app)
    yield Source(app, server.port)  # type: ignore[arg-type]
    app[RELEASE].set()


# --- backends ---------------------------------------------------------------------------------


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {err.decode() or out.decode()}")


@contextlib.asynccontextmanager
async def rabbit_bus() -> AsyncIterator[Bus]:
    vhost = f"kiln-test-{uuid.uuid4().hex}"
    await rabbitmqctl("add_vhost", vhost)
    try:
        await rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        bus = RabbitBus(f"{BROKER}/{vhost}")
        await bus.start()
        try:
            yield bus
        finally:
            await bus.close()
    finally:
        await rabbitmqctl("delete_vhost", vhost)


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[Database]:
    try:
        admin = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5.0)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is required at {PG_SERVER}: {exc!r}")
    name = f"kiln_test_{uuid.uuid4().hex}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        db = await open_database(f"{PG_SERVER}/{name}")
        try:
            yield db
        finally:
            await db.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class Backend(msgspec.Struct):
    db: Database
    bus: Bus


@pytest.fixture(params=["memory-sqlite", "rabbit-postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory-sqlite":
        memory, sqlite = MemoryBus(), await open_database(f"sqlite:///{tmp_path / 'kiln.db'}")
        await memory.start()
        try:
            yield Backend(sqlite, memory)
        finally:
            await memory.close()
            await sqlite.close()
        return
    async with rabbit_bus() as bus, postgres_database() as db:
        yield Backend(db, bus)


@pytest.fixture
def blob_root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def config(tmp_path: Path, blob_root: Path, images: Path, disk_sources: Path) -> WorkerConfig:
    """Short leases and periods, so that recovery happens within a test's time."""
    return WorkerConfig(
        worker_id=f"test-worker-{uuid.uuid4().hex[:8]}",
        blob_root=blob_root,
        allowed_hosts=("127.0.0.1",),
        import_root=images,
        disk_source_dir=disk_sources,
        idle_timeout=5.0,
        fetch_retries=0,
        prefetch=4,
        lease_seconds=3.0,
        renew_every=0.1,
        reconcile_every=0.2,
        relay_every=0.1,
        relay_after=0.5,
    )


@pytest.fixture
async def start_worker(backend: Backend, config: WorkerConfig) -> AsyncIterator[WorkerFactory]:
    """Starts workers, each with its own id (config fields overridable by keyword), stopped
    after the test."""
    started: list[Worker] = []

    async def start(disks: Any = None, **overrides: Any) -> Worker:
        overrides.setdefault("worker_id", f"{config.worker_id}-{len(started)}")
        worker_config = msgspec.structs.replace(config, **overrides)
        worker = Worker(backend.db, backend.bus, worker_config, disks=disks)
        await worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await worker.stop(timeout=1.0)


@pytest.fixture
async def gateway(backend: Backend) -> GatewayDouble:
    return GatewayDouble(backend.db, backend.bus)


@pytest.fixture
async def events(backend: Backend) -> EventLog:
    log = EventLog()
    await log.attach(backend.bus)
    return log


@pytest.fixture
def blob_files(blob_root: Path) -> Callable[[], list[Path]]:
    """Every stored blob (not the temporary files)."""
    return lambda: sorted(p for p in (blob_root / "sha256").rglob("*") if p.is_file())


@pytest.fixture
def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def temp_files(blob_root: Path) -> Callable[[], list[Path]]:
    return lambda: sorted((blob_root / "tmp").glob("*"))


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Log entries, with the context bound by the handlers."""
    capture = LogCapture()
    previous = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    yield capture.entries
    structlog.configure(**previous)
