"""Helpers the scenarios share: the Kiln API paths, waiting for imports, purging queues."""

import asyncio
import time
from collections.abc import Sequence

import aio_pika
import asyncpg

IMAGES = "/compute/v1/images"
TERMINAL = ("READY", "ERROR")


async def status_counts(dsn: str, folder: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM images WHERE folder_id = $1 GROUP BY status", folder
        )
    finally:
        await conn.close()
    return {row["status"]: int(row["n"]) for row in rows}


async def wait_terminal(dsn: str, folder: str, expected: int, timeout: float) -> dict[str, int]:
    """Poll the store every 100 ms until `expected` images of `folder` are READY or ERROR (or
    `timeout` s pass); the counts by status at the end."""
    conn = await asyncpg.connect(dsn)
    deadline = time.monotonic() + timeout
    try:
        while True:
            rows = await conn.fetch(
                "SELECT status, count(*) AS n FROM images WHERE folder_id = $1 GROUP BY status",
                folder,
            )
            counts = {row["status"]: int(row["n"]) for row in rows}
            if sum(counts.get(s, 0) for s in TERMINAL) >= expected:
                return counts
            if time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def purge(amqp: str, queues: Sequence[str]) -> None:
    """Empty `queues` (those that exist) of the vhost between runs."""
    connection = await aio_pika.connect(amqp)
    try:
        for name in queues:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                await queue.purge()
            except aio_pika.exceptions.ChannelClosed:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()
    finally:
        await connection.close()


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"
