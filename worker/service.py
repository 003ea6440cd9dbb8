"""The worker process's core: command consumers, the dead-letter consumer, the cancel notices'
subscription, the reconciler, the outbox relay and the event log's sequencer, started together
and stopped in order."""

import asyncio
import contextlib
from typing import Any

import structlog

from bus.base import Bus, Subscription
from bus.outbox_publisher import OutboxPublisher
from contracts.names import CANCELS_EXCHANGE, CREATE_QUEUE, DEAD_LETTER_QUEUE, DELETE_QUEUE
from store.db import Database, StoreError
from store.event_log_sequencer import EventSequencer
from store.outbox_table import SentMarker
from worker.blobs import BlobStore, FileBlobStore
from worker.cancels import CancelNotices
from worker.committer import Committer
from worker.config import WorkerConfig
from worker.dead_letter import DeadLetterHandler
from worker.handlers import CommandHandler, CommandHandlers, consuming
from worker.importing.disk_sources import DirectoryDiskSource, DiskSource
from worker.metrics import poll_gauges
from worker.outbox_relay import OutboxRelay
from worker.reconciler import Reconciler, temporary_max_idle, temporary_sweeper

log = structlog.get_logger(__name__)


class Worker:
    """Used alike by `kiln dev` (MemoryBus, SQLite) and `kiln worker` (RabbitMQ, PostgreSQL).

    The caller owns the database and the bus: it opens them before `start` and closes them
    after `stop`.
    """

    def __init__(
        self,
        db: Database,
        bus: Bus,
        config: WorkerConfig,
        *,
        blobs: BlobStore | None = None,
        disks: DiskSource | None = None,
    ) -> None:
        self.config = config
        self.blobs = blobs or FileBlobStore(config.blob_root)
        if disks is None and config.disk_source_dir is not None:
            disks = DirectoryDiskSource(config.disk_source_dir)
        self._db = db
        self._bus = bus
        self._marker = SentMarker(db)
        publisher = OutboxPublisher(bus, self._marker)
        # One committer for every consumer, so that their transitions share batches.
        self._committer = Committer(db, publisher, self.blobs, deadline=config.dependency_deadline)
        self.cancels = CancelNotices()
        self.handlers = CommandHandlers(
            db, self._committer, config, self.blobs, disks, self.cancels
        )
        self.dead_letters = DeadLetterHandler(self._committer)
        sweep = temporary_sweeper(self.blobs, temporary_max_idle(config))
        self.reconciler = Reconciler(db, publisher, config, sweep)
        self.relay = OutboxRelay(
            db, publisher, self._marker, every=config.relay_every, after=config.relay_after
        )
        self.sequencer = EventSequencer(db)
        self._subscriptions: list[Subscription] = []
        self._listening: Subscription | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def running(self) -> bool:
        return bool(self._subscriptions)

    async def start(self) -> None:
        """Listen for cancel notices, consume the command and dead-letter queues, then start the
        background loops."""
        if self.running:
            return
        consumers: list[tuple[str, CommandHandler]] = [
            (CREATE_QUEUE, self.handlers.handle_create),
            (DELETE_QUEUE, self.handlers.handle_delete),
            (DEAD_LETTER_QUEUE, self.dead_letters),
        ]
        try:
            self._listening = await self._bus.subscribe(CANCELS_EXCHANGE, [""], self.cancels)
            for queue, handler in consumers:
                subscription = await self._bus.consume(
                    queue, consuming(queue, handler), prefetch=self.config.prefetch
                )
                self._subscriptions.append(subscription)
        except BaseException:
            await self.stop(timeout=0)
            raise
        self._tasks = [
            asyncio.create_task(self.reconciler.run(), name="kiln-reconciler"),
            asyncio.create_task(self.relay.run(), name="kiln-outbox-relay"),
            asyncio.create_task(self.sequencer.run(), name="kiln-event-sequencer"),
            asyncio.create_task(poll_gauges(self._db, self._bus), name="kiln-metrics"),
        ]
        log.info(
            "worker.started",
            worker_id=self.config.worker_id,
            prefetch=self.config.prefetch,
            fetches=self.config.fetches,
        )

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop intake, give in-flight commands `timeout` seconds to finish (the rest are
        cancelled and redelivered; a cancel notice still stops one at once meanwhile), then
        stop listening, the reconciler and the relay."""
        subscriptions, self._subscriptions = self._subscriptions, []
        await asyncio.gather(*(s.stop(timeout) for s in subscriptions))
        listening, self._listening = self._listening, None
        if listening is not None:
            await listening.stop(timeout)
        await self._committer.close()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(StoreError):
            await self._marker.close()
        await self.handlers.close()
        log.info("worker.stopped", worker_id=self.config.worker_id)
