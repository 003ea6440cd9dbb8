"""The client side of `GET /kiln/v1/events`: Server-Sent Events read into CloudEvents, a
connection that resumes after its last position whenever it drops, and the per-folder
followers that let `KilnClient.wait` learn of finished operations without polling."""

import asyncio
import random
from collections.abc import AsyncIterator
from typing import NamedTuple

import aiohttp
import msgspec

from contracts.errors import Code
from contracts.events import CloudEvent, event_decoder
from kiln.client_http import (
    CONNECT_SECONDS,
    UNREACHABLE_ATTEMPTS,
    KilnError,
    Transport,
    Unreachable,
    error_of,
    no_answer,
)

EVENTS = "/kiln/v1/events"
ERROR_EVENT = "kiln.error"
# The server sends a comment every 15 s; three missed ones mean the connection is dead.
READ_TIMEOUT = aiohttp.ClientTimeout(
    total=None, connect=30.0, sock_connect=CONNECT_SECONDS, sock_read=45.0
)
BACKOFF, MAX_BACKOFF = 0.2, 10.0


class StreamEvent(msgspec.Struct, frozen=True):
    """One event: its position in the folder (what resuming starts after), the CloudEvent,
    and its JSON exactly as the server sent it."""

    position: int
    event: CloudEvent
    raw: bytes


class Frame(NamedTuple):
    """One dispatched SSE block; `data` is None for a block that only moves the position."""

    position: int | None
    type: str
    data: bytes | None


class SseParser:
    """The text/event-stream format (WHATWG HTML §9.2), fed with chunks as they arrive."""

    def __init__(self) -> None:
        self._pending = b""
        self._id: bytes | None = None
        self._type = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Frame]:
        lines = (self._pending + chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *complete, self._pending = lines.split(b"\n")
        frames = []
        for line in complete:
            frame = self._line(line)
            if frame is not None:
                frames.append(frame)
        return frames

    def _line(self, line: bytes) -> Frame | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._type = value
        elif name == b"id" and b"\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Frame | None:
        position = int(self._id) if self._id and self._id.isdigit() else None
        data = b"\n".join(self._data) if self._data else None
        kind = self._type.decode()
        self._type, self._data = b"", []
        if position is None and data is None:
            return None
        return Frame(position, kind, data)


def _backoff(failures: int) -> float:
    return random.uniform(0, min(MAX_BACKOFF, BACKOFF * 2**failures))


async def frames(
    transport: Transport,
    folder_id: str,
    types: str = "",
    after: int | None = None,
    *,
    attempts: int | None = None,
) -> AsyncIterator[Frame]:
    """The folder's stream, reconnected after `after` (the last position seen) whenever it
    drops or the server restarts. A refusal (400, 403, 404…) is raised; so is the
    `attempts`-th failure in a row to get any answer (None: keep trying), and a server never
    reached at all, after one quick retry."""
    failures, reached = 0, False
    while True:
        try:
            async for frame in _connection(transport, folder_id, types, after):
                failures, reached = 0, True
                after = frame.position if frame.position is not None else after
                yield frame
        except KilnError as error:
            if _given_up(error, failures + 1, attempts, reached):
                raise
        failures += 1
        await asyncio.sleep(_backoff(failures))


def _given_up(error: KilnError, failures: int, attempts: int | None, reached: bool) -> bool:
    if not error.transient or (attempts is not None and failures >= attempts):
        return True
    return isinstance(error, Unreachable) and not reached and failures >= UNREACHABLE_ATTEMPTS


async def _connection(
    transport: Transport, folder_id: str, types: str, after: int | None
) -> AsyncIterator[Frame]:
    url = transport.base_url + EVENTS
    params = {"folderId": folder_id, **({"type": types} if types else {})}
    headers = {"Accept": "text/event-stream"}
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    try:
        async with transport.open().get(
            url, params=params, headers=headers, timeout=READ_TIMEOUT
        ) as response:
            if response.status >= 400:
                raise error_of(response.status, await response.read(), response.headers)
            if response.content_type != "text/event-stream":
                message = f"GET {url}: answered {response.content_type}, not an event stream"
                raise KilnError(Code.UNIMPLEMENTED, message, response.status)
            parser = SseParser()
            async for chunk in response.content.iter_any():
                for frame in parser.feed(chunk):
                    if frame.type == ERROR_EVENT:
                        raise error_of(400, frame.data or b"", response.headers)
                    yield frame
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise no_answer("GET", url, transport.base_url, exc) from exc


async def events(
    transport: Transport, folder_id: str, types: str = "", after: int | None = None
) -> AsyncIterator[StreamEvent]:
    async for frame in frames(transport, folder_id, types, after):
        if frame.data is not None and frame.position is not None:
            yield StreamEvent(frame.position, event_decoder.decode(frame.data), frame.data)
