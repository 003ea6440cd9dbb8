"""Group commit's queue: requests that arrive while earlier ones are being written wait, then
are handed to a writer together, up to `max_batch` at a time, with up to `max_writers` batches
being written at once (while one waits for the database, the next is being built).

The gateway writes its creates and updates this way (api/group_commit.py), the worker its
state transitions (worker/committer.py): what a batch is written as is theirs to say."""

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

P = TypeVar("P")  # a request
R = TypeVar("R")  # its answer
Waiting = tuple[P, asyncio.Future[R]]


class Batches(Generic[P, R]):
    def __init__(
        self,
        write: Callable[[list[Waiting[P, R]]], Awaitable[None]],
        interrupted: Callable[[], BaseException],
        *,
        name: str,
        max_batch: int,
        max_writers: int,
    ) -> None:
        """`write` answers every request of a batch; one it left unanswered, because it failed
        or was cancelled, is answered with `interrupted()`. `name` names the writer tasks."""
        self._write = write
        self._name = name
        self._interrupted = interrupted
        self._max_batch = max_batch
        self._max_writers = max_writers
        self._waiting: list[Waiting[P, R]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._running = 0  # writers, counted down by the writer itself (see _write_waiting)

    async def submit(self, pending: P) -> R:
        """Queue the request for the next batch; its answer."""
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((pending, answer))
        if self._running < self._max_writers:
            self._running += 1
            # A context of its own: the writer's log lines belong to no one request.
            writer = asyncio.create_task(
                self._write_waiting(), name=self._name, context=contextvars.Context()
            )
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await answer

    async def close(self) -> None:
        """Wait for the batches being written: their requests are waiting for them."""
        await asyncio.gather(*self._writers, return_exceptions=True)

    async def _write_waiting(self) -> None:
        # The last look at _waiting and the count down happen in one step: a request queued
        # after it finds a free writer slot.
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                self._waiting = self._waiting[self._max_batch :]
                # A request its caller gave up on (cancelled) before its batch began is not
                # written: nobody would learn what became of it.
                batch = [waiting for waiting in batch if not waiting[1].done()]
                if not batch:
                    continue
                try:
                    await self._write(batch)
                except Exception:  # its requests are answered below; the next ones still wait
                    log.exception("group_commit.batch_failed", writer=self._name)
                finally:
                    for _, future in batch:  # none is left waiting, whatever went wrong
                        if not future.done():
                            future.set_exception(self._interrupted())
        finally:
            self._running -= 1


def answer(future: "asyncio.Future[R]", result: R | BaseException) -> None:
    """Answer a request, unless it was answered or given up (its caller was cancelled)."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
