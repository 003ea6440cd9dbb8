"""What wakes the event streams (news from the bus, a poll as a safety net, and shutdown),
and the periodic prune of the log they read.

The event log is the only source of what a stream sends. The bus only says "folder F has
something new, read the log now": one private queue per gateway, bound to every event and
opened when the first stream starts, wakes the streams of the event's folder, after a pass of
the event log's sequencer has numbered the event into the log. An event whose publishing was
deferred to the outbox relay still reaches its streams by their poll.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import msgspec
import structlog

from bus.base import Bus, BusError, Delivery, Subscription
from contracts.names import EVENTS_EXCHANGE
from runtime.clock import now_us
from store import event_log, idempotency, outbox_table
from store.db import Database, StoreError
from store.event_log_sequencer import EventSequencer

log = structlog.get_logger(__name__)

RESUBSCRIBE_SECONDS = 30.0
PRUNE_SECONDS = 600.0


class _Folder(msgspec.Struct):
    folderid: str = ""


_folder_decoder = msgspec.json.Decoder(_Folder)


class StreamWakeups:
    """One per gateway: per-folder wake-up events for the running streams."""

    def __init__(self, bus: Bus, sequencer: EventSequencer) -> None:
        self._bus = bus
        self._sequencer = sequencer
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._news: set[str] = set()
        self._waking: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._subscribing = asyncio.Lock()
        self._next_attempt = 0.0
        self.closing = asyncio.Event()

    @contextlib.asynccontextmanager
    async def watch(self, folder_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the folder may have news (and when the gateway closes)."""
        wakeup = asyncio.Event()
        self._watchers.setdefault(folder_id, set()).add(wakeup)
        try:
            await self._subscribe()
            yield wakeup
        finally:
            watchers = self._watchers.get(folder_id, set())
            watchers.discard(wakeup)
            if not watchers:
                self._watchers.pop(folder_id, None)

    def wake(self, folder_id: str) -> None:
        for wakeup in self._watchers.get(folder_id, ()):
            wakeup.set()

    async def close(self) -> None:
        """Wake every stream to end it, then stop listening to the bus."""
        self.closing.set()
        if self._waking is not None:
            self._waking.cancel()
            await asyncio.gather(self._waking, return_exceptions=True)
        for watchers in self._watchers.values():
            for wakeup in watchers:
                wakeup.set()
        if self._subscription is not None:
            await self._subscription.stop(timeout=1.0)
            self._subscription = None

    async def _subscribe(self) -> None:
        """Listen to the bus once per gateway; without it the streams rely on their poll."""
        if self._subscription is not None or time.monotonic() < self._next_attempt:
            return
        async with self._subscribing:
            if self._subscription is not None or self.closing.is_set():
                return
            try:
                self._subscription = await self._bus.subscribe(
                    EVENTS_EXCHANGE, ["#"], self._on_event
                )
            except BusError as exc:
                self._next_attempt = time.monotonic() + RESUBSCRIBE_SECONDS
                log.warning("event stream wake-ups unavailable, polling only", error=str(exc))

    async def _on_event(self, delivery: Delivery) -> None:
        try:
            folder_id = _folder_decoder.decode(delivery.body).folderid
        except msgspec.DecodeError:
            return
        if folder_id not in self._watchers or self.closing.is_set():
            return
        self._news.add(folder_id)
        if self._waking is None or self._waking.done():
            self._waking = asyncio.create_task(self._wake_news(), name="kiln-event-wakeups")

    async def _wake_news(self) -> None:
        """Sequence, then wake the folders with news; news that comes meanwhile shares the
        next pass (one pass per event would not keep up with hundreds a second)."""
        while self._news:
            news, self._news = self._news, set()
            try:
                await self._sequencer.drain()
            except StoreError as exc:
                log.warning("event stream wake-up without sequencing", error=str(exc))
            for folder_id in news:
                self.wake(folder_id)


async def prune_periodically(db: Database) -> None:
    """Apply the retention of the event log, idempotency keys and sent outbox rows every
    PRUNE_SECONDS (every gateway does: it is cheap and idempotent, needs no coordination)."""
    while True:
        await asyncio.sleep(PRUNE_SECONDS)
        try:
            removed = await event_log.prune_expired(db)
            async with db.transaction() as conn:
                keys = await idempotency.expire(conn, now_us())
                sent = await outbox_table.prune_sent(conn, now_us())
        except Exception:
            log.exception("prune failed")
            continue
        if removed or keys or sent:
            log.info("pruned", events=removed, idempotency_keys=keys, sent_outbox_rows=sent)
