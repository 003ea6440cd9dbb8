"""What an open event stream keeps checking about its caller, and how many streams one caller
may hold open.

A stream outlives the request that opened it, so the checks of that request are made again:
the token must not have reached its `exp` (the leeway single calls get for clock skew does not
stretch a stream), and the caller must still hold the list permission on the folder. That is
looked up before every batch the stream delivers (a check that passes after the batch was
read proves no removal of the right had committed before its events did) and every
RECHECK_SECONDS while nothing comes: a folder's bindings change without an event in its log.
"""

import collections
import contextlib
import time
from collections.abc import Iterator

from api import authorization
from api.authorization import Permission
from api.context import RequestContext
from contracts.errors import ApiError, Code, Unauthenticated
from store.db import Database

RECHECK_SECONDS = 5.0


class TooManyStreams(ApiError):
    code = Code.RESOURCE_EXHAUSTED


class CallerCheck:
    """The re-checks of one stream's caller on its folder."""

    def __init__(self, context: RequestContext, folder_id: str) -> None:
        self._context = context
        self._folder_id = folder_id
        self._checked_at = time.monotonic()  # the check that opened the stream

    def due_in(self) -> float:
        """Seconds until the next check is due (0: now)."""
        expiry = self._context.expires_at - time.time()
        recheck = self._checked_at + RECHECK_SECONDS - time.monotonic()
        return max(0.0, min(expiry, recheck))

    def require_token(self) -> None:
        if time.time() >= self._context.expires_at:
            raise Unauthenticated("token has expired: reconnect with a new one")

    async def check(self, db: Database, delivering: bool) -> None:
        """Unauthenticated or PermissionDenied once the stream must end; `delivering`: a
        batch of events is about to be sent."""
        self.require_token()
        if not delivering and time.monotonic() - self._checked_at < RECHECK_SECONDS:
            return
        if not self._context.admin:  # KILN_ADMINS cannot change while the gateway runs
            async with db.reading() as conn:
                await authorization.require_on_folder(
                    conn, self._context, self._folder_id, Permission.LIST
                )
        self._checked_at = time.monotonic()


class StreamSlots:
    """The event streams each subject has open in this gateway, up to a limit."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def hold(self, subject: str) -> Iterator[None]:
        """One of the subject's slots while the stream runs; TooManyStreams if none is left."""
        if self._open[subject] >= self._limit:
            raise TooManyStreams(
                f"caller {subject} already has {self._limit} event streams open on this gateway,"
                " the most one caller may; close one first"
            )
        self._open[subject] += 1
        try:
            yield
        finally:
            self._open[subject] -= 1
            if not self._open[subject]:
                del self._open[subject]
