"""Riding out outages of the worker's dependencies.

A handler that finds the database or the blob store unavailable does not hand its command back
to the queue (each return spends one of its few deliveries, and they would all be spent within
seconds): the worker keeps the command and runs the handler again, after growing pauses, once
the dependency answers again, for up to a deadline. A bad command is still dead-lettered at
once: only these faults wait."""

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator

import structlog

from runtime.metrics import DEPENDENCY_UNAVAILABLE
from store.db import StoreUnavailable
from worker.errors import BlobStoreUnavailable

log = structlog.get_logger(__name__)

STORE = "database"
BLOBS = "blob store"
DEFAULT_DEADLINE = 600.0  # seconds
PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)
LONGEST_PAUSE = 15.0
BLOB_POLL = 1.0  # seconds between looks at a full blob store (a statvfs)


class DependencyDeadline(Exception):
    """A dependency stayed unavailable past the deadline; `cause` is its last error."""

    def __init__(self, dependency: str, seconds: float, cause: Exception) -> None:
        super().__init__(f"{dependency} unavailable for {seconds:.0f} s: {cause}")
        self.dependency = dependency
        self.cause = cause


class Outages:
    """`blobs_writable` asks the blob store whether it takes writes again: after a full disk a
    command runs again, and downloads its source again, only once there is room."""

    def __init__(self, deadline: float, blobs_writable: Callable[[], Awaitable[bool]]) -> None:
        self.deadline = deadline
        self._writable = blobs_writable

    async def outlast(self, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run` until it ends without a dependency fault; DependencyDeadline when the
        dependency is still down `deadline` seconds after the first fault."""
        started: float | None = None  # the outage's first fault, not the handler's start
        pauses = _pauses()
        while True:
            try:
                return await run()
            except (StoreUnavailable, BlobStoreUnavailable) as exc:
                started = time.monotonic() if started is None else started
                dependency = STORE if isinstance(exc, StoreUnavailable) else BLOBS
                DEPENDENCY_UNAVAILABLE.labels(dependency=dependency).inc()
                log.warning("dependency.unavailable", dependency=dependency, error=str(exc))
                await self._wait_for(dependency, exc, started, pauses)

    async def _wait_for(
        self, dependency: str, fault: Exception, started: float, pauses: Iterator[float]
    ) -> None:
        """Pause, growing from one fault to the next; for the blob store, then on until it has
        room again, looking every second."""
        await self._sleep(next(pauses), dependency, fault, started)
        while dependency == BLOBS and not await self._has_room():
            await self._sleep(BLOB_POLL, dependency, fault, started)

    async def _has_room(self) -> bool:
        try:
            return await self._writable()
        except OSError as exc:  # the store's filesystem itself is away: not yet
            log.warning("dependency.check_failed", dependency=BLOBS, error=str(exc))
            return False

    async def _sleep(self, pause: float, dependency: str, fault: Exception, started: float) -> None:
        waited = time.monotonic() - started
        if waited + pause > self.deadline:
            raise DependencyDeadline(dependency, waited, fault) from fault
        await asyncio.sleep(pause)


def pause(attempt: int) -> float:
    """The pause after the `attempt`-th fault in a row (1, 2, …)."""
    return PAUSES[attempt - 1] if attempt <= len(PAUSES) else LONGEST_PAUSE


def _pauses() -> Iterator[float]:
    return map(pause, itertools.count(1))
