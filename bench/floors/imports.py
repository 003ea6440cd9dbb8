"""The import floors: a bare asyncio client that fetches each file from the same local server,
sha256-hashes it and writes it to a file it fsyncs, at the same concurrency Kiln imports at
(small images); and the same in one stream for one large image."""

import asyncio
import hashlib
import os
import time
from pathlib import Path

import aiohttp
import msgspec

CHUNK = 1 << 20  # the chunk Kiln's fetch reads


class FloorImports(msgspec.Struct, kw_only=True):
    ok: int
    failed: int
    elapsed: float
    bytes: int

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0


async def _fetch_to(session: aiohttp.ClientSession, url: str, path: Path) -> int:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    size = 0
    try:
        async with session.get(url) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_chunked(CHUNK):
                digest.update(chunk)
                os.write(fd, chunk)
                size += len(chunk)
        await asyncio.to_thread(os.fsync, fd)
    finally:
        os.close(fd)
    digest.hexdigest()
    return size


async def fetch_hash_write(
    urls: list[str], concurrency: int, directory: Path, deadline: float
) -> FloorImports:
    """Every url fetched, hashed and fsync-written under `directory`, `concurrency` at once."""
    directory.mkdir(parents=True, exist_ok=True)
    pending = iter(enumerate(urls))
    ok = failed = total = 0
    started = time.perf_counter()

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal ok, failed, total
        for index, url in pending:
            if time.perf_counter() - started > deadline:
                return
            try:
                total += await _fetch_to(session, url, directory / f"{index}.img")
                ok += 1
            except (aiohttp.ClientError, OSError):
                failed += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return FloorImports(ok=ok, failed=failed, elapsed=time.perf_counter() - started, bytes=total)


async def stream_hash_write(url: str, path: Path) -> FloorImports:
    """One large file in one stream: fetch → sha256 → write, fsync at the end. Hashing and
    writing run in one thread (both release the GIL) while the loop receives the next chunks,
    so the floor is the faster of the network and the hash-and-write, not their sum."""
    started = time.perf_counter()
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)

    def consume(chunk: bytes) -> None:
        digest.update(chunk)
        os.write(fd, chunk)

    failures: list[OSError] = []

    async def writer() -> None:  # drains the queue even after a failure: the reader never blocks
        while (chunk := await chunks.get()) is not None:
            if not failures:
                try:
                    await asyncio.to_thread(consume, chunk)
                except OSError as exc:
                    failures.append(exc)

    size = 0
    try:
        writing = asyncio.create_task(writer())
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_chunked(CHUNK):
                await chunks.put(chunk)
                size += len(chunk)
        await chunks.put(None)
        await writing
        if failures:
            raise failures[0]
        await asyncio.to_thread(os.fsync, fd)
    finally:
        os.close(fd)
    digest.hexdigest()
    return FloorImports(ok=1, failed=0, elapsed=time.perf_counter() - started, bytes=size)
