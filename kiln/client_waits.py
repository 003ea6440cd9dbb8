"""Waiting for operations on the event stream: one `compute.operation.done` stream per folder,
shared by every wait of a client (an import waiting for a thousand creates holds one
connection per folder, not a thousand polls).

A wait registers itself, waits for its folder's stream to be open, then reads the operation
once: whatever finishes after that read is on the stream, whatever finished before shows in
the read. Any trouble with the stream (no such endpoint, not allowed, unreachable) answers
None, and the caller polls instead.
"""

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from contracts.events import event_decoder
from contracts.images import Image
from contracts.operations import Operation
from kiln.client_events import frames
from kiln.client_http import KilnError, Transport

log = structlog.get_logger(__name__)

DONE_TYPE = "compute.operation.done"
LINGER_SECONDS = 5.0  # an idle folder stream stays open this long for the next wait
RECHECK_SECONDS = 10.0  # re-read the operation now and then: some ends have no event
CONNECT_ATTEMPTS = 3
FOLDER_CACHE = 10_000
_UNSUPPORTED = frozenset({404, 405, 501})

GetOperation = Callable[[str], Awaitable[Operation]]
GetImage = Callable[[str], Awaitable[Image]]


class _FolderStream:
    """The done events of one folder, dispatched to the waits registered for them."""

    def __init__(self, transport: Transport, folder_id: str, owner: "OperationWaits") -> None:
        self.folder_id = folder_id
        self._owner = owner
        self._waits: dict[str, asyncio.Future[bool]] = {}
        self._open: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._linger: asyncio.TimerHandle | None = None
        self._task = asyncio.create_task(self._run(transport), name=f"kiln-events-{folder_id}")

    @property
    def running(self) -> bool:
        return not self._task.done()

    def expect(self, operation_id: str) -> asyncio.Future[bool]:
        """Resolves True when the operation's done event arrives, False if the stream ends."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        return self._waits.setdefault(operation_id, asyncio.get_running_loop().create_future())

    def forget(self, operation_id: str) -> None:
        self._waits.pop(operation_id, None)
        if not self._waits and self.running:
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(LINGER_SECONDS, self._stop_if_idle)

    async def opened(self) -> bool:
        return await asyncio.shield(self._open)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _stop_if_idle(self) -> None:
        if not self._waits:
            self._task.cancel()

    async def _run(self, transport: Transport) -> None:
        try:
            stream = frames(transport, self.folder_id, DONE_TYPE, attempts=CONNECT_ATTEMPTS)
            async for frame in stream:
                self._resolve_open(True)
                if frame.data is not None:
                    waiting = self._waits.get(event_decoder.decode(frame.data).correlationid)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(True)
        except KilnError as error:
            if error.http_status in _UNSUPPORTED:
                self._owner.supported = False
            log.debug("event stream unusable, polling", folder_id=self.folder_id, error=str(error))
        except Exception:
            log.warning("event stream failed, polling", folder_id=self.folder_id, exc_info=True)
        finally:
            self._resolve_open(False)
            for waiting in self._waits.values():
                if not waiting.done():
                    waiting.set_result(False)

    def _resolve_open(self, value: bool) -> None:
        if not self._open.done():
            self._open.set_result(value)


class OperationWaits:
    """A client's folder streams, and the folders of the images it has seen."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._streams: dict[str, _FolderStream] = {}
        self._folders: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.supported = True

    def remember(self, image_id: str, folder_id: str) -> None:
        """Note an image's folder (create_image knows it), sparing a lookup in `wait`."""
        self._folders[image_id] = folder_id
        self._folders.move_to_end(image_id)
        if len(self._folders) > FOLDER_CACHE:
            self._folders.popitem(last=False)

    async def wait(
        self, operation: Operation, get_operation: GetOperation, get_image: GetImage
    ) -> Operation | None:
        """The operation once done, followed on the stream; None when the caller must poll."""
        folder_id = await self._folder_of(operation, get_image) if self.supported else None
        if folder_id is None:
            return None
        stream = self._stream(folder_id)
        done = stream.expect(operation.id)
        try:
            if not await stream.opened():
                return None
            announced = False
            while True:
                current = await get_operation(operation.id)
                if current.done:
                    return current
                if announced:
                    return None  # announced, yet not done on reading: polling settles it
                with contextlib.suppress(TimeoutError):
                    announced = await asyncio.wait_for(asyncio.shield(done), RECHECK_SECONDS)
                    if not announced:
                        return None  # the stream ended
        finally:
            stream.forget(operation.id)

    async def close(self) -> None:
        streams, self._streams = list(self._streams.values()), {}
        await asyncio.gather(*(stream.stop() for stream in streams))

    def _stream(self, folder_id: str) -> _FolderStream:
        stream = self._streams.get(folder_id)
        if stream is None or not stream.running:
            stream = self._streams[folder_id] = _FolderStream(self._transport, folder_id, self)
        return stream

    async def _folder_of(self, operation: Operation, get_image: GetImage) -> str | None:
        metadata = operation.metadata
        image_id = getattr(metadata, "image_id", "") or getattr(metadata, "resource_id", "")
        if not image_id:
            return None
        if image_id not in self._folders:
            try:
                self.remember(image_id, (await get_image(image_id)).folder_id)
            except KilnError:
                return None  # gone already, or not ours to read: polling will tell
        return self._folders[image_id]
