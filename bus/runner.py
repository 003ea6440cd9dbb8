"""Handler outcomes and consumer draining, shared by every transport."""

import asyncio
import enum
from typing import Any

import structlog

from bus.base import Delivery, Handler, Reject, Retry

log = structlog.get_logger(__name__)


class Outcome(enum.Enum):
    """What the transport does with a message once its handler finished."""

    ACK = "ack"
    REQUEUE = "requeue"
    DEAD_LETTER = "dead-letter"


async def run_handler(handler: Handler, delivery: Delivery, queue: str) -> Outcome:
    """Run `handler` and map how it ended to an outcome; unexpected errors are logged.

    The message's ids are bound to structlog's context, so the handler's logs carry them.
    """
    with structlog.contextvars.bound_contextvars(
        queue=queue,
        message_id=delivery.message_id,
        correlation_id=delivery.correlation_id,
        delivery_count=delivery.delivery_count,
    ):
        try:
            await handler(delivery)
        except Retry as exc:
            log.info("bus.handler_retry", reason=str(exc))
            return Outcome.REQUEUE
        except Reject as exc:
            log.warning("bus.handler_reject", reason=str(exc))
            return Outcome.DEAD_LETTER
        except Exception:
            log.exception("bus.handler_failed")
            return Outcome.REQUEUE
    return Outcome.ACK


def check_prefetch(prefetch: int) -> None:
    """Refuse a prefetch that would not bound concurrency (AMQP's 0 means unlimited)."""
    if prefetch < 1:
        raise ValueError(f"prefetch must be at least 1, got {prefetch}")


class InFlight:
    """The handler tasks of one consumer, so that stopping can drain them."""

    def __init__(self, queue: str) -> None:
        self._queue = queue
        self._tasks: set[asyncio.Task[Any]] = set()

    def add(self, task: asyncio.Task[Any]) -> None:
        """Track `task` until it is done."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` for the tracked tasks, then cancel what is left."""
        pending: set[asyncio.Task[Any]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        log.info("bus.consumer_stopped", queue=self._queue, left=len(pending))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
