"""Run one transition in its own transaction, then do what may only follow the commit:
delete bytes no image uses any more, and publish the transition's outbox rows."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
import tenacity

from bus.outbox import OutboxPublisher
from store import images
from store.db import Connection, Database
from worker.blobs import BlobStore
from worker.observe import count_finished, finishing
from worker.transitions import Transition

log = structlog.get_logger(__name__)

In = TypeVar("In")  # a transition's input
TransitionFn = Callable[[Connection, In], Awaitable[Transition]]

# A transaction can lose a deadlock or a serialization race against the gateway; transitions
# are compare-and-set, so running one again is safe.
ATTEMPTS = 3


class BytesReleased(Exception):
    """The bytes an import stored were released by a concurrent delete before it committed."""


class Settler:
    def __init__(self, db: Database, publisher: OutboxPublisher, blobs: BlobStore) -> None:
        self._db = db
        self._publisher = publisher
        self._blobs = blobs

    async def __call__(
        self, transition: TransitionFn[In], data: In, *, uses: str | None = None
    ) -> Transition:
        """Run `transition`; `uses` names the blob it makes an image point at, which must
        still exist when it commits (else BytesReleased)."""
        result = await self._commit(transition, data, uses)
        if result.release:
            await self._release(result.release)
        await self._publisher.publish(result.messages)
        return result

    async def _commit(self, transition: TransitionFn[In], data: In, uses: str | None) -> Transition:
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            retry=tenacity.retry_if_not_exception_type(BytesReleased),
            wait=tenacity.wait_random(0.05, 0.3),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt, finishing() as finished:
                async with self._db.transaction() as conn:
                    if uses:
                        await self._check_stored(conn, uses)
                    result = await transition(conn, data)
                count_finished(finished)
                return result
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _check_stored(self, conn: Connection, digest: str) -> None:
        await images.lock_blob(conn, digest)
        if not await self._blobs.exists(digest):
            raise BytesReleased(digest)

    async def _release(self, digest: str) -> None:
        """Delete bytes no image uses, under the blob's lock: a create that found them stored
        and commits later either counts as a user here or finds them gone and imports again."""
        try:
            async with self._db.transaction() as conn:
                await images.lock_blob(conn, digest)
                if await images.count_blob_users(conn, digest):
                    return
                await self._blobs.delete(digest)
        except OSError as exc:
            log.error("blob.release_failed", digest=digest, error=str(exc))
            return
        log.info("blob.released", digest=digest)


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("transition.retry", attempt=state.attempt_number, error=repr(error))
