"""Start-up waits for what a process needs: the database and the broker are opened again, with
backoff, while they cannot serve yet (not started, starting up, full), until
KILN_STARTUP_TIMEOUT_SECONDS have passed. A URL that cannot work stops start-up at once."""

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

import click
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from bus.base import BusError, BusUnavailable
from kiln.settings import Settings, SettingsError, env_name
from store.db import StoreMisconfigured, StoreUnavailable

log = structlog.get_logger(__name__)
T = TypeVar("T")

NOT_YET = (StoreUnavailable, BusUnavailable, TimeoutError)  # wait, and try again
# A BusUnavailable is a BusError too: NOT_YET is looked at first.
CANNOT_WORK = (StoreMisconfigured, BusError, ValueError)
BACKOFF = wait_exponential(multiplier=0.1, max=2.0)  # 0.1, 0.2, 0.4 … 2 s between attempts
ATTEMPT_SECONDS = 2.0  # the least time one attempt gets, the last one at the deadline too
_PASSWORD_PARAMETER = re.compile(r"(password=)[^&]*")


class Dependency(NamedTuple):
    name: str
    setting: str  # the Settings field that holds its URL
    url: str

    def __str__(self) -> str:
        return f"{self.name} at {env_name(self.setting)}={without_password(self.url)}"


def database(settings: Settings) -> Dependency:
    name = "PostgreSQL" if settings.database.startswith("postgres") else "SQLite"
    return Dependency(name, "database_url", settings.database)


def broker(settings: Settings) -> Dependency:
    name = "RabbitMQ" if settings.broker_url.startswith("amqp") else "the in-process bus"
    return Dependency(name, "broker_url", settings.broker_url)


def without_password(url: str) -> str:
    """`url` with its password, in the user part or the query, as ***."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{host}"
    return _PASSWORD_PARAMETER.sub(r"\1***", f"{scheme}{separator}{authority}{slash}{path}")


class StartupWait:
    """Opens the dependencies of one start-up, one deadline for them all."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout

    async def opened(self, dependency: Dependency, open_it: Callable[[], Awaitable[T]]) -> T:
        """What `open_it` gives, once it gives it. Past the deadline, a ClickException (exit
        1); a URL that cannot work, a SettingsError (exit 2): one line each, no traceback."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(NOT_YET),
            wait=lambda state: min(BACKOFF(state), self._left()),
            stop=lambda _: self._left() <= 0,
            before_sleep=lambda state: _log_waiting(dependency, state),
            reraise=True,
        )
        try:
            return await retrying(self._attempt, open_it)
        except NOT_YET as exc:
            raise click.ClickException(
                f"gave up waiting for {dependency} after"
                f" {env_name('startup_timeout_seconds')}={self._timeout:g}: {_reason(exc)}"
            ) from None
        except CANNOT_WORK as exc:
            raise SettingsError(dependency.setting, str(exc)) from None

    async def _attempt(self, open_it: Callable[[], Awaitable[T]]) -> T:
        async with asyncio.timeout(max(self._left(), ATTEMPT_SECONDS)):
            return await open_it()

    def _left(self) -> float:
        return max(self._deadline - time.monotonic(), 0.0)


def _log_waiting(dependency: Dependency, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "startup.waiting",
        waiting_for=str(dependency),
        error=_reason(error),
        attempt=state.attempt_number,
        retry_in_seconds=round(state.upcoming_sleep, 2),
    )


def _reason(exc: BaseException | None) -> str:
    """What went wrong, in one line (a timeout has no message of its own)."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time"
    return str(exc)
