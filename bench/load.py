"""Load generators, every one bounded by a request count and a deadline, aimed at 127.0.0.1.

`closed_loop`: `concurrency` clients, each sending its next request when the last one answered.
`paced`: requests started on a fixed schedule (open loop), for a target rate.
`threaded_closed_loop`: the same as `closed_loop` for blocking clients (boto3), in threads.
"""

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from bench.stats import percentile

MAX_ERROR_SAMPLES = 5


class LoadResult(msgspec.Struct, kw_only=True):
    sent: int
    ok: int
    errors: int
    elapsed: float  # seconds from the first request to the last answer
    latencies_ms: list[float]
    error_samples: list[str]

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.samples: list[str] = []
        self.sent = 0

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(f"{type(exc).__name__}: {exc}"[:300])

    def result(self, elapsed: float) -> LoadResult:
        return LoadResult(
            sent=self.sent,
            ok=len(self.latencies),
            errors=self.errors,
            elapsed=elapsed,
            latencies_ms=self.latencies,
            error_samples=self.samples,
        )


async def closed_loop(
    call: Callable[[int], Awaitable[Any]], *, count: int, concurrency: int, deadline: float
) -> LoadResult:
    """`count` calls of `call(i)` by `concurrency` clients; stops early after `deadline` s.
    A call that raises counts as an error (its latency is not recorded)."""
    tally, indexes = _Tally(), iter(range(count))
    started = time.perf_counter()
    stop_at = started + deadline

    async def client() -> None:
        for index in indexes:
            if time.perf_counter() > stop_at:
                return
            tally.sent += 1
            begin = time.perf_counter()
            try:
                await call(index)
            except Exception as exc:
                tally.failed(exc)
            else:
                tally.latencies.append((time.perf_counter() - begin) * 1000)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return tally.result(time.perf_counter() - started)


async def paced(
    call: Callable[[int], Awaitable[Any]],
    *,
    rate: float,
    count: int,
    deadline: float,
    max_in_flight: int = 512,
) -> LoadResult:
    """Start `call(i)` at `i / rate` seconds (open loop) for `count` calls or `deadline` s.
    At most `max_in_flight` calls run at once: past that the schedule slips (the server is
    not keeping up), which shows as a lower achieved rate."""
    tally, gate = _Tally(), asyncio.Semaphore(max_in_flight)
    started = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int) -> None:
        begin = time.perf_counter()
        try:
            await call(index)
        except Exception as exc:
            tally.failed(exc)
        else:
            tally.latencies.append((time.perf_counter() - begin) * 1000)
        finally:
            gate.release()

    for index in range(count):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.perf_counter() - started > deadline:
            break
        await gate.acquire()
        tally.sent += 1
        task = asyncio.create_task(one(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    remaining = max(1.0, deadline - (time.perf_counter() - started))
    if tasks:
        await asyncio.wait(tasks, timeout=remaining)
    for task in tasks:
        task.cancel()
    return tally.result(time.perf_counter() - started)


def threaded_closed_loop(
    call: Callable[[int], Any], *, count: int, concurrency: int, deadline: float
) -> LoadResult:
    """`closed_loop` for blocking calls: `concurrency` threads."""
    tally, lock = _Tally(), threading.Lock()
    indexes = itertools.count()
    started = time.perf_counter()

    def client() -> None:
        while True:
            with lock:
                index = next(indexes)
            if index >= count or time.perf_counter() - started > deadline:
                return
            begin = time.perf_counter()
            try:
                call(index)
            except Exception as exc:
                with lock:
                    tally.sent += 1
                    tally.failed(exc)
            else:
                elapsed = (time.perf_counter() - begin) * 1000
                with lock:
                    tally.sent += 1
                    tally.latencies.append(elapsed)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=deadline + 30)
    return tally.result(time.perf_counter() - started)


class HttpError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200].decode(errors='replace')}")
        self.status = status


class Http:
    """One keep-alive aiohttp session against a local server; every request carries `headers`
    and must answer 2xx (else HttpError)."""

    def __init__(self, base_url: str, headers: dict[str, str], connections: int) -> None:
        host = urlsplit(base_url).hostname
        if host != "127.0.0.1":
            raise ValueError(f"load targets 127.0.0.1 only, not {host}")
        self.base_url = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=connections, force_close=False),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def __aenter__(self) -> "Http":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        async with self._session.request(
            method,
            self.base_url + path,
            data=body,
            headers={"Content-Type": "application/json", **(headers or {})} if body else headers,
        ) as response:
            data = await response.read()
            if response.status >= 300:
                raise HttpError(response.status, data)
            return data

    async def get(self, path: str) -> bytes:
        return await self.request("GET", path)

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
        return await self.request("POST", path, body, headers)
