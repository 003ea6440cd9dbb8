"""What ends a source that keeps sending, but too slowly: the overall deadline and the minimum rate
(worker/importing/pace.py), with limits small enough to cross in a fraction of a second; and what
they leave alone: a source slow to start, a steady one."""

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
import pytest

from contracts.errors import Code
from worker.errors import ImportRefused
from worker.importing.fetch import FetchPolicy

KiB, MiB = 1 << 10, 1 << 20
RawStart = Callable[..., Awaitable[str]]
Fetch = Callable[[str, FetchPolicy], Awaitable[bytes]]
Refusal = Callable[[str, FetchPolicy], Awaitable[ImportRefused]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TRICKLE_SECONDS = 3.0  # then the source hangs up, so that nothing here can run for ever


def head(length: int) -> bytes:
    return (
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float = 0.05) -> None:
    """Send `data` a byte at a time: each byte comes well within the idle timeout."""
    for i in range(min(len(data), int(TRICKLE_SECONDS / every))):
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(every)


async def trickled_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(head(MiB))
    await trickle(writer, bytes(MiB))


async def trickled_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await trickle(writer, head(MiB) + bytes(MiB))


async def test_a_source_below_the_minimum_rate_is_ended(
    raw_server: RawStart, policy: FetchPolicy, refusal: Refusal
) -> None:
    limits = msgspec.structs.replace(policy, min_rate=KiB, rate_window=0.3)

    error = await refusal(await raw_server(trickled_body), limits)

    assert error.code == Code.DEADLINE_EXCEEDED
    assert error.message.startswith("source sent ")
    assert error.message.endswith(" s, below the minimum rate of 1024 bytes/s")


@pytest.mark.parametrize("handler", [trickled_body, trickled_head])
async def test_a_source_that_never_finishes_is_ended_at_the_deadline(
    raw_server: RawStart, policy: FetchPolicy, refusal: Refusal, handler: Handler
) -> None:
    limits = msgspec.structs.replace(policy, deadline=0.5, min_rate=0)

    error = await refusal(await raw_server(handler), limits)

    assert (error.code, error.message) == (
        Code.DEADLINE_EXCEEDED,
        "source did not finish within the import deadline of 0.5 s",
    )


async def test_a_source_slow_to_start_gets_the_first_window(
    raw_server: RawStart, policy: FetchPolicy, fetch: Fetch
) -> None:
    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(MiB))
        await writer.drain()
        await asyncio.sleep(1.5)  # nothing through the first window and half the second
        writer.write(bytes(MiB))
        await writer.drain()

    limits = msgspec.structs.replace(policy, min_rate=64 * KiB, rate_window=1.0)

    assert len(await fetch(await raw_server(late), limits)) == MiB


async def test_a_steady_source_above_the_minimum_rate_is_read_whole(
    raw_server: RawStart, policy: FetchPolicy, fetch: Fetch
) -> None:
    chunks = 20

    async def steady(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(chunks * 64 * KiB))
        for _ in range(chunks):  # ~1.3 MB/s for a second: ten times the minimum below
            writer.write(bytes(64 * KiB))
            await writer.drain()
            await asyncio.sleep(0.05)

    limits = msgspec.structs.replace(policy, deadline=10.0, min_rate=128 * KiB, rate_window=0.2)

    assert len(await fetch(await raw_server(steady), limits)) == chunks * 64 * KiB
