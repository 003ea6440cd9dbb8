"""Starting and stopping Kiln's processes: each resource opened in order, closed in reverse."""

import asyncio
import contextlib
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator

import click
import structlog
from aiohttp import web

from bus import connect_bus
from bus.base import Bus
from gateway.app import create_app
from gateway.settings import GatewaySettings
from kiln import logs
from kiln.settings import Settings
from store import open_database
from store.db import Database
from worker.config import WorkerConfig
from worker.service import Worker

log = structlog.get_logger(__name__)
DRAIN_SECONDS = 30.0


def require_shared(settings: Settings) -> None:
    """Separate gateway and worker processes must share a broker and a database."""
    if not settings.broker_url.startswith("amqp"):
        raise click.UsageError("bad setting KILN_BROKER_URL: kiln gateway/worker need amqp://…")


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        worker_id=f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
        blob_root=settings.blob_root,
        allowed_hosts=settings.import_allowed_hosts,
        import_root=settings.import_root,
        max_bytes=settings.import_max_bytes,
        disk_source_dir=settings.disk_source_dir,
        prefetch=settings.worker_prefetch,
        lease_seconds=settings.worker_lease_seconds,
        renew_every=settings.worker_lease_seconds / 3,
        reconcile_every=settings.worker_reconcile_seconds,
    )


def gateway_settings(settings: Settings) -> GatewaySettings:
    return GatewaySettings(
        max_body_bytes=settings.max_body_bytes,
        disk_source_configured=settings.disk_source_dir is not None,
    )


@contextlib.asynccontextmanager
async def infrastructure(settings: Settings) -> AsyncIterator[tuple[Database, Bus]]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await open_database(settings.database)
    try:
        bus = connect_bus(settings.broker_url)
        await bus.start()
        try:
            yield db, bus
        finally:
            await bus.close()
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def serving(settings: Settings, db: Database, bus: Bus) -> AsyncIterator[None]:
    app = await create_app(gateway_settings(settings), db, bus)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    log.info("gateway listening", url=f"http://{settings.http_host}:{settings.http_port}")
    try:
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def working(settings: Settings, db: Database, bus: Bus) -> AsyncIterator[None]:
    worker = Worker(db, bus, worker_config(settings))
    await worker.start()
    try:
        yield
    finally:
        await worker.stop(DRAIN_SECONDS)


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")


async def run_dev(settings: Settings) -> None:
    logs.configure(settings.log_format)
    # Leaving the block closes the HTTP server first, then drains the worker.
    async with (
        infrastructure(settings) as (db, bus),
        working(settings, db, bus),
        serving(settings, db, bus),
    ):
        await until_signalled()


async def run_gateway(settings: Settings) -> None:
    logs.configure(settings.log_format)
    async with infrastructure(settings) as (db, bus), serving(settings, db, bus):
        await until_signalled()


async def run_worker(settings: Settings) -> None:
    logs.configure(settings.log_format)
    async with infrastructure(settings) as (db, bus), working(settings, db, bus):
        await until_signalled()
