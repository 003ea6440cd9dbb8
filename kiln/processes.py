"""Starting and stopping Kiln's processes: each resource opened in order, closed in reverse."""

import asyncio
import contextlib
import gc
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import click
import structlog
import uvloop
from aiohttp import web

from api.settings import GatewaySettings
from bus import connect_bus
from bus.base import Bus
from gateway.app import create_app
from gateway.keys import DRAINING
from kiln import logs, ports, startup, tokens
from kiln.settings import Settings, SettingsError, both_names, check_directories, env_name
from store import clock_sync, open_database
from store.db import Database
from worker.blob_stores import opened_blob_store
from worker.blobs import BlobStore
from worker.blobs_s3 import S3Settings
from worker.config import WorkerConfig
from worker.http import create_side_app
from worker.service import Worker

log = structlog.get_logger(__name__)
DRAIN_SECONDS = 30.0
# The longest request line the contract allows: every query parameter at its longest, in
# 4-byte characters percent-encoded, is about 20 KiB (aiohttp's default is 8190 bytes, past
# which its parser answers in plain text, not the contract's error shape).
MAX_REQUEST_LINE = 32 * 1024


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a Kiln process on uvloop (its effect: bench/RESULTS-create-b921405.md in 274ba32)."""
    # Everything imported so far lives as long as the process: leave it out of the garbage
    # collector's full passes, which otherwise stop the event loop for ~50 ms each here.
    gc.collect()
    gc.freeze()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def require_shared(settings: Settings) -> None:
    """Separate gateway and worker processes must share a broker and a database."""
    if not settings.broker_url.startswith("amqp"):
        raise SettingsError("broker_url", "kiln gateway/worker need amqp://…")


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        worker_id=f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
        blob_root=settings.blob_root,
        allowed_hosts=settings.import_allowed_hosts,
        import_root=settings.import_root,
        max_bytes=settings.import_max_bytes,
        deadline=settings.import_deadline_seconds,
        min_rate=settings.import_min_rate_bytes,
        disk_source_dir=settings.disk_source_dir,
        prefetch=settings.worker_prefetch,
        fetches=settings.worker_fetches,
        lease_seconds=settings.worker_lease_seconds,
        renew_every=settings.worker_lease_seconds / 3,
        dependency_deadline=settings.dependency_deadline_seconds,
        reconcile_every=settings.worker_reconcile_seconds,
    )


def s3_settings(settings: Settings) -> S3Settings:
    return S3Settings(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        addressing_style=settings.s3_addressing_style,
        part_size=settings.s3_part_size,
    )


def check_capacity(settings: Settings, blobs: BlobStore) -> None:
    """The largest import must fit in one blob of the store (an object store's multipart limit)."""
    limit: int | None = getattr(blobs, "max_blob_size", None)
    if limit is not None and settings.import_max_bytes > limit:
        raise SettingsError(
            "import_max_bytes",
            f"{settings.import_max_bytes} bytes is more than the blob store holds in one blob"
            f" ({limit} bytes); raise {both_names('s3_part_size')} or lower this",
        )


def require_auth(settings: Settings) -> None:
    """A gateway authenticates every call: it needs a token secret or a JWKS URL."""
    if not (settings.token_secret or settings.jwks_url):
        raise SettingsError(
            "token_secret",
            f"the gateway needs a token secret or {both_names('jwks_url')} to authenticate callers",
        )


def gateway_settings(settings: Settings) -> GatewaySettings:
    require_auth(settings)
    return GatewaySettings(
        max_body_bytes=settings.max_body_bytes,
        max_streams_per_subject=settings.max_streams_per_subject,
        disk_source_configured=settings.disk_source_dir is not None,
        import_allowed_hosts=settings.import_allowed_hosts,
        import_root_configured=settings.import_root is not None,
        token_secret=settings.token_secret,
        jwks_url=settings.jwks_url,
        jwt_audience=settings.jwt_audience,
        jwt_issuer=settings.jwt_issuer,
        admins=frozenset(settings.admins),
    )


def warn_unchecked_claims(settings: Settings) -> None:
    """A JWKS verifies its provider's tokens for every application and tenant: warn unless the
    gateway checks both their audience and their issuer."""
    checked = {"aud": settings.jwt_audience, "iss": settings.jwt_issuer}
    unchecked = [claim for claim, expected in checked.items() if not expected]
    if settings.jwks_url and unchecked:
        log.warning(
            "auth.claims_unchecked",
            unchecked=unchecked,
            hint=f"set {env_name('jwt_audience')} and {env_name('jwt_issuer')}: otherwise"
            " tokens the JWKS provider signed for other applications or tenants are accepted",
        )


@contextlib.asynccontextmanager
async def infrastructure(settings: Settings) -> AsyncIterator[tuple[Database, Bus]]:
    """The database, then the broker, each waited for while it cannot serve yet."""
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only when new
    except OSError as exc:
        why = f"cannot make {str(settings.data_dir)!r}: {exc.strerror}"
        raise SettingsError("data_dir", why) from None
    waiting = startup.StartupWait(settings.startup_timeout_seconds)
    db = await waiting.opened(startup.database(settings), lambda: open_database(settings.database))
    in_step = asyncio.create_task(clock_sync.keep_in_step(db), name="kiln-clock")
    try:
        bus = connect_bus(settings.broker_url, quorum_size=settings.broker_quorum_size)
        try:
            await waiting.opened(startup.broker(settings), bus.start)
            yield db, bus
        finally:
            await bus.close()  # a connection a start-up cut short is closed too
    finally:
        in_step.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await in_step
        await db.close()


@contextlib.asynccontextmanager
async def blob_store(settings: Settings) -> AsyncIterator[BlobStore]:
    """The blob store the storage URL names, checked against the largest import."""
    async with opened_blob_store(settings.storage, s3_settings(settings)) as blobs:
        check_capacity(settings, blobs)
        yield blobs


@contextlib.asynccontextmanager
async def serving(settings: Settings, db: Database, bus: Bus) -> AsyncIterator[None]:
    """The gateway. On the way out: readiness fails at once, then after the grace period the
    listener closes, requests in flight finish (up to DRAIN_SECONDS) and connections close.

    aiohttp's keep-alive timer is what bounds reading a request head: it runs from the
    connection's start or its previous response until a whole head has arrived (bytes that
    trickle in do not restart it), and never cuts a request being handled, an event stream
    say."""
    warn_unchecked_claims(settings)
    app = await create_app(gateway_settings(settings), db, bus)
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=DRAIN_SECONDS,
        keepalive_timeout=settings.http_header_timeout_seconds,
        max_line_size=MAX_REQUEST_LINE,
    )
    await runner.setup()
    try:
        await ports.listen(runner, settings.http_host, settings.http_port, "http_port")
    except SettingsError:
        await runner.cleanup()
        raise
    log.info("gateway listening", url=f"http://{settings.http_host}:{settings.http_port}")
    try:
        yield
    finally:
        app[DRAINING].set()
        log.info("gateway.draining", grace_seconds=settings.shutdown_grace_seconds)
        await asyncio.sleep(settings.shutdown_grace_seconds)
        await runner.cleanup()
        log.info("gateway.stopped")


@contextlib.asynccontextmanager
async def side_port(
    settings: Settings, db: Database, bus: Bus, worker: Worker
) -> AsyncIterator[asyncio.Event]:
    """A worker's /metrics, /healthz and /readyz (none when the port is 0); yields the event
    that shutdown sets to fail readiness."""
    draining = asyncio.Event()
    if settings.worker_http_port == 0:
        yield draining
        return
    app = create_side_app(db, bus, worker.blobs, draining, lambda: worker.running)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = await ports.listen_side(runner, settings.http_host, settings.worker_http_port)
    except SettingsError:
        await runner.cleanup()
        raise
    log.info("worker.http_listening", url=f"http://{settings.http_host}:{site.port}")
    try:
        yield draining
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def working(worker: Worker, draining: asyncio.Event | None = None) -> AsyncIterator[None]:
    """Run `worker`; on the way out, fail readiness, then stop intake and drain."""
    await worker.start()
    try:
        yield
    finally:
        if draining is not None:
            draining.set()
        await worker.stop(DRAIN_SECONDS)


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")


@contextlib.asynccontextmanager
async def dev_process(settings: Settings) -> AsyncIterator[str | None]:
    """Gateway and worker in one process; the gateway's port serves /metrics and the probes.
    Yields the admin token it made if no secret is configured. Leaving closes the HTTP server
    first, then drains the worker."""
    check_directories(settings, "data_dir", "import_root", "disk_source_dir")
    ports.check_free(settings.http_host, settings.http_port, "http_port")
    settings, token = tokens.bootstrap_dev(settings)
    async with (
        infrastructure(settings) as (db, bus),
        blob_store(settings) as blobs,
        working(Worker(db, bus, worker_config(settings), blobs=blobs)),
        serving(settings, db, bus),
    ):
        yield token


@contextlib.asynccontextmanager
async def gateway_process(settings: Settings) -> AsyncIterator[None]:
    check_directories(settings, "data_dir")
    ports.check_free(settings.http_host, settings.http_port, "http_port")
    async with infrastructure(settings) as (db, bus), serving(settings, db, bus):
        yield


@contextlib.asynccontextmanager
async def worker_process(settings: Settings) -> AsyncIterator[Worker]:
    """A worker and its side port; leaving fails readiness, drains, then closes the port."""
    check_directories(settings, "data_dir", "import_root", "disk_source_dir")
    if settings.worker_http_port:  # set: it must be free (unset: 9090, or a free one)
        ports.check_free(settings.http_host, settings.worker_http_port, "worker_http_port")
    async with infrastructure(settings) as (db, bus), blob_store(settings) as blobs:
        worker = Worker(db, bus, worker_config(settings), blobs=blobs)
        async with side_port(settings, db, bus, worker) as draining, working(worker, draining):
            yield worker


def show_admin_token(settings: Settings, token: str) -> None:
    """What `kiln dev` prints at start-up when it made its own secret: a token to paste."""
    path = settings.data_dir / tokens.ADMIN_TOKEN_FILE
    base = f"http://{settings.http_host}:{settings.http_port}"
    days = tokens.DEV_TOKEN_SECONDS // 86400
    click.echo(
        f"\nAdmin token for subject {tokens.DEV_ADMIN!r} ({days} days; also in {path}):\n\n"
        f"{token}\n\n"
        f'  curl -H "Authorization: Bearer $(cat {path})" "{base}/compute/v1/images?folderId=f1"\n'
    )


async def run_dev(settings: Settings) -> None:
    logs.configure(settings.log_format)
    async with dev_process(settings) as token:
        if token is not None:
            show_admin_token(settings, token)
        await until_signalled()


async def run_gateway(settings: Settings) -> None:
    require_shared(settings)
    require_auth(settings)
    logs.configure(settings.log_format)
    async with gateway_process(settings):
        await until_signalled()


async def run_worker(settings: Settings) -> None:
    require_shared(settings)
    logs.configure(settings.log_format)
    async with worker_process(settings):
        await until_signalled()


PROCESSES = {"dev": run_dev, "gateway": run_gateway, "worker": run_worker}
