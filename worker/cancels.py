"""Cancel notices heard on `kiln.cancels` (contracts/notices.py): each wakes the lease of the
operation it names, if this worker holds it, to look at the operation at once.

A notice stops nothing by itself: the lease's check (worker/leases.py) reads the operation and
stops the work only if the store says it was cancelled, so a stale, repeated or stray notice
costs one read, and a lost one leaves the cancel to the next renewal."""

import asyncio
import collections
import contextlib
from collections.abc import Iterator

import msgspec
import structlog

from bus.base import Delivery, Reject
from contracts.notices import notice_decoder

log = structlog.get_logger(__name__)

# Notices kept for operations this worker does not hold (yet): one can arrive between a claim
# and the start of the work it guards.
REMEMBERED = 1024


class CancelNotices:
    """The bus handler of the notices, and what the leases watch."""

    def __init__(self, remembered: int = REMEMBERED) -> None:
        self._watched: dict[str, asyncio.Event] = {}
        self._unclaimed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._remembered = remembered

    async def __call__(self, delivery: Delivery) -> None:
        try:
            notice = notice_decoder.decode(delivery.body)
        except msgspec.DecodeError as exc:
            raise Reject(f"undecodable cancel notice: {exc}") from exc
        self.heard(notice.operation_id)

    def heard(self, operation_id: str) -> None:
        """Wake the watch of `operation_id`; without one, remember it for a while."""
        watched = self._watched.get(operation_id)
        if watched is not None:
            log.info("lease.cancel_noticed", operation_id=operation_id)
            watched.set()
            return
        self._unclaimed[operation_id] = None
        self._unclaimed.move_to_end(operation_id)
        if len(self._unclaimed) > self._remembered:
            self._unclaimed.popitem(last=False)

    @contextlib.contextmanager
    def watch(self, operation_id: str) -> Iterator[asyncio.Event]:
        """An event set by each notice for `operation_id` while the block runs (set already
        if one came shortly before)."""
        noticed = asyncio.Event()
        if operation_id in self._unclaimed:
            del self._unclaimed[operation_id]
            noticed.set()
        self._watched[operation_id] = noticed
        try:
            yield noticed
        finally:
            if self._watched.get(operation_id) is noticed:  # not a later hold's watch
                del self._watched[operation_id]
