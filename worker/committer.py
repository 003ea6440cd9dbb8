"""Run transitions in transactions, then do what may only follow the commit: delete bytes no
image uses any more, and publish the transitions' outbox rows.

Transitions that handlers ask for while earlier ones are being committed wait, then go
together into one transaction (group commit, runtime/batching.py) and one publish: a worker
runs its imports' start and end in batches instead of a transaction and a confirmed publish
each, with one statement per table (lifecycle/transitions.py). A batch that fails is run again
one change at a time, each with its own retries, so only the change at fault fails. What the
committed transitions finished is counted and logged in the context of the handler that asked."""

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import structlog
import tenacity

from bus.outbox_publisher import OutboxPublisher
from contracts.errors import Code
from lifecycle import transitions
from lifecycle.transitions import Transition
from runtime.batching import Batches, Waiting, answer
from store import images
from store.db import Connection, Database, StoreError, StoreUnavailable
from worker import outages
from worker.blobs import BlobStore
from worker.errors import BlobStoreUnavailable
from worker.outages import DEFAULT_DEADLINE

log = structlog.get_logger(__name__)


# A transaction can lose a deadlock or a serialization race against the gateway; transitions
# are compare-and-set, so running one again is safe.
ATTEMPTS = 3
MAX_BATCH = 32
MAX_WRITERS = 2


# Carries out a batch of changes in the caller's transaction (lifecycle.transitions.run).
RunChanges = Callable[[Connection, Sequence[Any]], Awaitable[list[Transition]]]


class BytesReleased(Exception):
    """The bytes an import stored were released by a concurrent delete before it committed."""


class Step(NamedTuple):
    """One change to carry out: `uses` names the blob it makes an image point at, `context`
    the log context of the handler that asked for it."""

    change: Any
    uses: str | None
    context: dict[str, object]


class Committer:
    def __init__(
        self,
        db: Database,
        publisher: OutboxPublisher,
        blobs: BlobStore,
        *,
        deadline: float = DEFAULT_DEADLINE,
        run: RunChanges = transitions.run,
    ) -> None:
        """`deadline`: how long a change waits for an unavailable database; `run` carries
        out a batch of changes."""
        self._db = db
        self._run_changes = run
        self._deadline = deadline
        self._publisher = publisher
        self._blobs = blobs
        self._batches: Batches[Step, Transition] = Batches(
            self._commit_batch,
            _interrupted,
            name="kiln-commit",
            max_batch=MAX_BATCH,
            max_writers=MAX_WRITERS,
        )

    async def __call__(self, change: object, *, uses: str | None = None) -> Transition:
        """Carry out `change`; `uses` names the blob it makes an image point at, which must
        still exist when it commits (else BytesReleased)."""
        context = structlog.contextvars.get_contextvars()
        return await self._batches.submit(Step(change, uses, context))

    async def close(self) -> None:
        """Wait for the transitions being committed."""
        await self._batches.close()

    async def _commit_batch(self, batch: list[Waiting[Step, Transition]]) -> None:
        if len(batch) > 1:
            try:
                results = await self._commit_together([step for step, _ in batch])
            except StoreUnavailable as exc:  # an outage: each step alone waits it out
                log.info("transition.batch_failed", transitions=len(batch), error=str(exc))
            except Exception:
                log.info("transition.batch_failed", transitions=len(batch), exc_info=True)
            else:
                await self._after_commit(batch, results)
                return
        # One deadline for the batch: past it, the steps after a database outage fail at once.
        until = time.monotonic() + self._deadline
        for one in batch:
            # Alone, everything the step leads to is logged in its handler's context.
            with structlog.contextvars.bound_contextvars(**one[0].context):
                try:
                    result = await self._commit_alone(one[0], until)
                except Exception as exc:
                    answer(one[1], exc)
                else:
                    await self._after_commit([one], [result])

    async def _after_commit(
        self, batch: list[Waiting[Step, Transition]], results: list[Transition]
    ) -> None:
        """Release what the committed transitions say, answer them, then publish their rows:
        they happened, whatever goes wrong here (unpublished rows stay for the outbox relay).
        Their handlers need not wait for the broker's confirms to acknowledge their commands."""
        try:
            try:
                for (step, _), result in zip(batch, results, strict=True):
                    _count(step, result)
                    if result.release:
                        await self._release(result.release)
            finally:
                for (_, future), result in zip(batch, results, strict=True):
                    answer(future, result)
            await self._publisher.publish([m for result in results for m in result.messages])
        except Exception:
            log.exception("transition.after_commit_failed")

    async def _commit_together(self, steps: list[Step]) -> list[Transition]:
        """Every step in one transaction: first the locks of the blobs they use, in digest
        order, then (lifecycle/transitions.py) the images in id order, so that two batches
        cannot wait for each other."""
        async with self._db.transaction() as conn:
            await self._hold_bytes(conn, {step.uses for step in steps if step.uses})
            return await self._run_changes(conn, [step.change for step in steps])

    async def _commit_alone(self, step: Step, until: float) -> Transition:
        retrying = tenacity.AsyncRetrying(
            stop=functools.partial(_stop, until),
            retry=tenacity.retry_if_not_exception_type(BytesReleased),
            wait=_wait,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self._db.transaction() as conn:
                    return await self._run(conn, step)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _run(self, conn: Connection, step: Step) -> Transition:
        """Run `step` alone in the caller's transaction."""
        if step.uses:
            await self._hold_bytes(conn, {step.uses})
        (result,) = await self._run_changes(conn, [step.change])
        return result

    async def _hold_bytes(self, conn: Connection, digests: set[str]) -> None:
        """Lock the blobs until commit; BytesReleased if the bytes of one are gone already.
        The stores are asked all at once: on an object store each is a request, made while
        the locks are held."""
        await images.lock_blobs(conn, digests)
        ordered = sorted(digests)
        found = await asyncio.gather(*(self._blobs.exists(digest) for digest in ordered))
        for digest, stored in zip(ordered, found, strict=True):
            if not stored:
                raise BytesReleased(digest)

    async def _release(self, digest: str) -> None:
        """Delete bytes no image uses, under the blob's lock: a create that found them stored
        and commits later either counts as a user here or finds them gone and imports again."""
        try:
            async with self._db.transaction() as conn:
                await images.lock_blobs(conn, [digest])
                if await images.blobs_in_use(conn, [digest]):
                    return
                await self._blobs.delete(digest)
        except (OSError, StoreError, BlobStoreUnavailable) as exc:  # the bytes stay, unused
            log.error("blob.release_failed", digest=digest, error=str(exc))
            return
        log.info("blob.released", digest=digest)


def _count(step: Step, result: Transition) -> None:
    """Count the operations a committed transition finished; log those that failed, in the
    context of the handler that asked for it."""
    transitions.count_finished(result)
    for finished in result.finished:
        if finished.code is not None:
            event = "operation.cancelled" if finished.code == Code.CANCELLED else "operation.failed"
            with structlog.contextvars.bound_contextvars(**step.context):
                log.info(event, **finished._asdict())  # the operation that ended


def _stop(until: float, state: tenacity.RetryCallState) -> bool:
    """A lost race is tried `ATTEMPTS` times; an unavailable database until `until` (monotonic
    time): the transition may be the end of an import whose bytes are stored already."""
    if isinstance(_error(state), StoreUnavailable):
        return time.monotonic() >= until
    return state.attempt_number >= ATTEMPTS


def _wait(state: tenacity.RetryCallState) -> float:
    if isinstance(_error(state), StoreUnavailable):
        return outages.pause(state.attempt_number)
    return random.uniform(0.05, 0.3)


def _error(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


def _interrupted() -> StoreUnavailable:
    return StoreUnavailable("the transition was interrupted; retry")


def _log_retry(state: tenacity.RetryCallState) -> None:
    log.warning("transition.retry", attempt=state.attempt_number, error=repr(_error(state)))
