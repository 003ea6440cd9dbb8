"""Operation leases: a running operation is held by one worker, which renews its lease while it
works and notices a cancel when it does, or at once when a cancel notice wakes it."""

import asyncio
import enum
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

from lifecycle.changes import Lease
from lifecycle.locked_rows import take_leases
from runtime.clock import now_us
from store import operations
from store.db import Database
from store.operations import OperationRecord
from worker.cancels import CancelNotices
from worker.config import WorkerConfig, seconds_us
from worker.errors import WorkerError

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Interruption(enum.Enum):
    """Why work under a lease was stopped before it finished."""

    CANCELLED = "cancel requested"
    FINISHED = "operation finished elsewhere"
    LOST = "lease taken by another worker"


class LeaseKeeper:
    """Takes, renews and gives back the leases of one worker."""

    def __init__(self, db: Database, config: WorkerConfig, notices: CancelNotices) -> None:
        self._db = db
        self._notices = notices
        self._owner = config.worker_id
        self._lease_us = seconds_us(config.lease_seconds)
        self._grace_us = seconds_us(config.pending_grace)
        self._renew_every = config.renew_every

    def new(self, operation_id: str) -> Lease:
        """Our lease on the operation, to take."""
        return Lease(operation_id=operation_id, owner=self._owner, length_us=self._lease_us)

    async def take(self, operation_id: str) -> OperationRecord | None:
        """Claim the operation unless another worker holds a live lease on it; the operation
        as claimed (one statement: the lease and the read)."""
        async with self._db.transaction() as conn:
            lease = self.new(operation_id)
            return (await take_leases(conn, [lease])).get(operation_id)

    async def give_back(self, operation_id: str) -> None:
        """Release our lease on an operation left open, so any worker may take it at once."""
        async with self._db.transaction() as conn:
            if await operations.release_lease(
                conn, operation_id, self._owner, now_us() + self._grace_us
            ):
                log.info("lease.released")

    async def hold(self, operation_id: str, work: Coroutine[Any, Any, T]) -> T | Interruption:
        """Run `work` while renewing the lease; stop it when the operation is cancelled,
        finished elsewhere, or taken over: found at a renewal, or at once after a cancel
        notice for it. Its exceptions propagate."""
        task = asyncio.create_task(work)
        try:
            with self._notices.watch(operation_id) as noticed:
                while not await self._next_check(task, noticed):
                    reason = await self._renew(operation_id)
                    if reason is not None:
                        log.info("lease.interrupted", reason=reason.value)
                        return await _stop(task, reason)
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _next_check(self, task: "asyncio.Task[T]", noticed: asyncio.Event) -> bool:
        """Wait until the renewal is due or a notice came (False), or `task` is done (True)."""
        heard = asyncio.create_task(noticed.wait())
        try:
            done, _ = await asyncio.wait(
                {task, heard}, timeout=self._renew_every, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            heard.cancel()
        noticed.clear()
        return task in done

    async def _renew(self, operation_id: str) -> Interruption | None:
        now = now_us()
        try:
            async with self._db.transaction() as conn:
                op = await operations.get(conn, operation_id)
                if op is None or op.done:
                    return Interruption.FINISHED
                if op.cancel_requested:
                    return Interruption.CANCELLED
                until = now + self._lease_us
                if not await operations.renew_lease(conn, op.id, self._owner, until):
                    return Interruption.LOST
        except Exception:
            # Keep working: the lease lasts several renewal periods, the next one may succeed.
            log.exception("lease.renew_failed")
        return None


async def _stop(task: "asyncio.Task[T]", reason: Interruption) -> T | Interruption:
    """Cancel `task`; if it finished first, its result, so the caller can settle it."""
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        return reason
    except WorkerError:
        return reason
