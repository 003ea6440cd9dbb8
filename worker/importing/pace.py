"""How long a fetch may take: an overall deadline, and a minimum rate the source must sustain.

The idle timeout alone cannot end a source that sends a byte every few seconds behind a large
Content-Length: each byte resets it, and the import would hold its slot for ever."""

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import aiohttp

from contracts.errors import Code
from worker.errors import ImportRefused

T = TypeVar("T")


class Pace:
    """The limits of one fetch, from its start: it must end within `deadline` seconds, and
    send at least `min_rate` bytes per second averaged over each `window` seconds (0: no
    minimum). The first window is not judged, so that a source slow to start is not ended.
    A limit ends the fetch when it is crossed, also while the source sends nothing."""

    def __init__(self, deadline: float, min_rate: int, window: float) -> None:
        now = time.monotonic()
        self._deadline, self._min_rate, self._window = deadline, min_rate, window
        self._ends_at = now + deadline
        self._window_start = now + window
        self._window_bytes = 0

    async def within_deadline(self, step: Awaitable[T]) -> T:
        """Await `step` (the response head: redirects and retries included) before the
        deadline."""
        timeout = asyncio.timeout_at(self._ends_at)
        try:
            async with timeout:
                return await step
        except TimeoutError:
            if timeout.expired():
                raise self._late() from None
            raise

    async def read(self, body: aiohttp.StreamReader, size: int) -> bytes:
        """The next chunk of `body` (b"" at its end), within the limits."""
        while True:
            timeout = asyncio.timeout_at(self._next_judgement())
            try:
                async with timeout:
                    chunk = await body.read(size)
            except TimeoutError:
                if not timeout.expired():
                    raise  # the idle timeout of the session
                self._judge(time.monotonic())
                continue
            if chunk:
                self._count(len(chunk))
            return chunk

    def _next_judgement(self) -> float:
        if not self._min_rate:
            return self._ends_at
        return min(self._ends_at, self._window_start + self._window)

    def _count(self, received: int) -> None:
        now = time.monotonic()
        if now >= self._window_start:
            self._window_bytes += received
        self._judge(now)

    def _judge(self, now: float) -> None:
        if now >= self._ends_at:
            raise self._late()
        elapsed = now - self._window_start
        if not self._min_rate or elapsed < self._window:
            return
        if self._window_bytes < self._min_rate * elapsed:
            raise ImportRefused(
                Code.DEADLINE_EXCEEDED,
                f"source sent {self._window_bytes} bytes in {elapsed:.1f} s, below the minimum"
                f" rate of {self._min_rate} bytes/s",
            )
        self._window_start, self._window_bytes = now, 0

    def _late(self) -> ImportRefused:
        return ImportRefused(
            Code.DEADLINE_EXCEEDED,
            f"source did not finish within the import deadline of {self._deadline:g} s",
        )
