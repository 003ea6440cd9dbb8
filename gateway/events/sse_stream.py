"""`GET /kiln/v1/events?folderId=F[&type=T]`: a folder's events as Server-Sent Events.

Every SSE event is one CloudEvent exactly as published on `kiln.events` (`data:`), with the
CloudEvent type as `event:` and the event's folder position (store/event_log.py) as `id:`. A
connection starts at the folder's newest position, or after `Last-Event-ID` (the header, or
`lastEventId` for clients that cannot set headers): the log is replayed from there, then followed
live. Everything sent is read from the log, in position order, so a resumed stream misses and
repeats nothing; the bus only wakes streams up (gateway/events/sse_wakeups.py).

An `id:` line without data (the start position, or the position after events a `type` filter skipped
or the caller may not see: binding changes of an image whose bindings it may not list,
gateway/access/binding_events.py) moves the client's Last-Event-ID on without an event. A position
whose successors were pruned is refused with 400 OUT_OF_RANGE before the stream starts, or ends a
running stream with a `kiln.error` event: never a silent gap. So does the caller's token reaching
its `exp`, or the caller losing the right to list the folder (gateway/events/sse_caller.py); each
caller may hold a limited number of streams open at once."""

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator

import msgspec
import structlog
from aiohttp import web

from api import authorization
from api.authorization import Permission
from api.context import RequestContext
from contracts.errors import ApiError, Code, InvalidArgument
from contracts.events import EVENT_NAMES, EventStreamRequest, event_type
from contracts.operations import RequestInfo, Status
from gateway.access import binding_events
from gateway.context import context_of
from gateway.events.sse_caller import CallerCheck, StreamSlots
from gateway.events.sse_wakeups import StreamWakeups, prune_periodically
from gateway.http import query_request
from gateway.keys import BUS, DB, SEQUENCER, SETTINGS, STREAM_SLOTS, STREAM_WAKEUPS
from store import event_log
from store.db import StoreUnavailable
from store.event_log import Page
from store.event_log_sequencer import EventSequencer

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

BATCH = 100  # events read and written at once: what a slow client can make us hold
POLL_SECONDS = 1.0  # the safety net under bus wake-ups
HEARTBEAT_SECONDS = 15.0
RETRY_MS = 1000  # the reconnection delay suggested to EventSource clients
ERROR_EVENT = "kiln.error"
_SHORT = {"operation.done": "compute.operation.done"}
TYPES = frozenset(event_type(_SHORT.get(name, name)) for name in EVENT_NAMES)
_POSITION = re.compile(r"[0-9]{1,18}")
_encoder = msgspec.json.Encoder()


class OutOfRange(ApiError):
    code = Code.OUT_OF_RANGE


def parse_types(text: str) -> frozenset[str]:
    """`ready,compute.operation.done` → full CloudEvent types; empty: every type."""
    names = (t.strip() for t in text.split(","))
    types = frozenset(event_type(_SHORT.get(n, n)) for n in names if n)
    unknown = sorted(types - TYPES)
    if unknown:
        raise InvalidArgument(f"type: unknown event type {unknown[0]!r} (one of {sorted(TYPES)})")
    return types


def resume_point(request: web.Request, query_value: str) -> int | None:
    """The position to resume after: the Last-Event-ID header (a reconnecting EventSource
    sends it), else the lastEventId parameter; None to start at the newest event."""
    given = request.headers.get("Last-Event-ID", "").strip() or query_value.strip()
    if not given:
        return None
    if not _POSITION.fullmatch(given):
        raise InvalidArgument(f"lastEventId: {given[:40]!r} is not an event position")
    return int(given)


async def first_page(
    app: web.Application, context: RequestContext, folder_id: str, after: int | None
) -> Page:
    """Where the stream starts; a folder's events are for whoever may list its images.
    What has committed is numbered first, so a stream opened after a write starts behind it."""
    db = app[DB]
    async with db.transaction() as conn:
        await authorization.require_on_folder(conn, context, folder_id, Permission.LIST)
    await app[SEQUENCER].drain()
    async with db.transaction() as conn:
        if after is None:
            last = await event_log.last_position(conn, folder_id)
            return Page(after=last, last_position=last, entries=[])
        page = await event_log.read_after(conn, folder_id, after, BATCH)
    if page.beyond_end:
        raise OutOfRange(
            f"lastEventId: folder {folder_id} has no event {after} (its last is "
            f"{page.last_position})"
        )
    if page.pruned:
        raise OutOfRange(f"lastEventId: {_pruned_message(folder_id, after)}")
    return page


def _pruned_message(folder_id: str, after: int) -> str:
    hours = event_log.RETENTION_US // 3_600_000_000
    return (
        f"events of folder {folder_id} after position {after} are older than the "
        f"{hours} h retention and were removed; reconnect without Last-Event-ID and "
        "re-read the current state"
    )


@routes.get("/kiln/v1/events")
async def stream_events(request: web.Request) -> web.StreamResponse:
    parsed = query_request(request, EventStreamRequest)
    types = parse_types(parsed.type)
    after = resume_point(request, parsed.last_event_id)
    feed, context = request.app[STREAM_WAKEUPS], context_of(request)
    caller = CallerCheck(context, parsed.folder_id)
    caller.require_token()
    with request.app[STREAM_SLOTS].hold(context.subject):
        async with feed.watch(parsed.folder_id) as wakeup:
            page = await first_page(request.app, context, parsed.folder_id, after)
            response = web.StreamResponse(
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            )
            response.content_type = "text/event-stream"
            response.headers["X-Request-Id"] = context.request_id
            await response.prepare(request)
            stream = EventStream(request, response, parsed.folder_id, types, feed, caller)
            await stream.run(page, wakeup)
    return response


class EventStream:
    """One connection: writes batches from the log, awaiting each write (a slow reader slows
    its own stream and holds at most one batch), and waits for news in between."""

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        folder_id: str,
        types: frozenset[str],
        feed: StreamWakeups,
        caller: CallerCheck,
    ) -> None:
        self._request = request
        self._response = response
        self._folder_id = folder_id
        self._types = types
        self._feed = feed
        self._caller = caller
        self._last_write = time.monotonic()

    async def run(self, page: Page, wakeup: asyncio.Event) -> None:
        try:
            await self._write(f"retry: {RETRY_MS}\nid: {page.after}\n\n".encode())
            await self._follow(page, wakeup)
        except ApiError as exc:
            with contextlib.suppress(ConnectionError):
                await self._error(exc)
        except ConnectionError:
            pass  # the client went away
        except StoreUnavailable as exc:
            log.warning("event stream ended: store unavailable", error=str(exc))
        except Exception:
            log.exception("event stream failed", folder_id=self._folder_id)

    async def _follow(self, page: Page, wakeup: asyncio.Event) -> None:
        db = self._request.app[DB]
        while True:
            if page.pruned:
                raise OutOfRange(_pruned_message(self._folder_id, page.after))
            await self._caller.check(db, delivering=bool(page.entries))
            cursor = await self._send(page)
            if len(page.entries) < BATCH and not await self._idle(wakeup):
                return
            wakeup.clear()
            async with db.transaction() as conn:
                page = await event_log.read_after(conn, self._folder_id, cursor, BATCH)

    async def _send(self, page: Page) -> int:
        """Write the page's events (those the filter keeps and the caller may see); the
        position now reached."""
        if not page.entries:
            return page.after
        context, db = context_of(self._request), self._request.app[DB]
        hidden = await binding_events.withheld(db, context, self._folder_id, page.entries)
        shown = [
            entry
            for entry in page.entries
            if entry.position not in hidden and (not self._types or entry.type in self._types)
        ]
        parts = [_frame(entry.position, entry.type, entry.body) for entry in shown]
        last = page.entries[-1]
        if not shown or shown[-1] is not last:
            parts.append(f"id: {last.position}\n\n".encode())
        await self._write(b"".join(parts))
        return last.position

    async def _idle(self, wakeup: asyncio.Event) -> bool:
        """Wait for a wake-up, the poll or the caller's next check; False when the stream
        should end."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), min(POLL_SECONDS, self._caller.due_in()))
        transport = self._request.transport
        if self._feed.closing.is_set() or transport is None or transport.is_closing():
            return False
        if time.monotonic() - self._last_write >= HEARTBEAT_SECONDS:
            await self._write(b": keep-alive\n\n")
        return True

    async def _error(self, error: ApiError) -> None:
        """The stream's last event: why it ends, as the contract's error object."""
        details = [RequestInfo(request_id=context_of(self._request).request_id)]
        status = Status(code=int(error.code), message=error.message, details=details)
        await self._write(f"event: {ERROR_EVENT}\n".encode() + _data(_encoder.encode(status)))

    async def _write(self, data: bytes) -> None:
        if data:
            await self._response.write(data)
            self._last_write = time.monotonic()


def _frame(position: int, type: str, body: bytes) -> bytes:
    return f"id: {position}\nevent: {type}\n".encode() + _data(body)


def _data(body: bytes) -> bytes:
    # Compact JSON holds no newline; should one appear, SSE carries it as one more data line.
    return b"".join(b"data: " + line + b"\n" for line in body.split(b"\n")) + b"\n"


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The event log's sequencer and periodic prune; on the way out, the bus wake-ups stop."""
    tasks = [
        asyncio.create_task(app[SEQUENCER].run(), name="kiln-event-sequencer"),
        asyncio.create_task(prune_periodically(app[DB]), name="kiln-event-log-prune"),
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await app[STREAM_WAKEUPS].close()


async def _end_streams(app: web.Application) -> None:
    """Shutdown: end every open stream now (clients reconnect elsewhere with their
    Last-Event-ID) instead of holding the server open until its shutdown timeout."""
    await app[STREAM_WAKEUPS].close()


def setup(app: web.Application) -> None:
    app[SEQUENCER] = EventSequencer(app[DB])
    app[STREAM_WAKEUPS] = StreamWakeups(app[BUS], app[SEQUENCER])
    app[STREAM_SLOTS] = StreamSlots(app[SETTINGS].max_streams_per_subject)
    app.add_routes(routes)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_end_streams)
