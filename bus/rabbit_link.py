"""RabbitLink: Kiln's own reconnect loop over the nodes of a RabbitMQ cluster.

aio-pika's robust connection reconnects to the one address it was given; a cluster node that
died took every Kiln process with it until it came back. The link instead tries the next node
at once, round after round, and hands each new connection to its owner to restore on."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from bus.base import BusError, BusUnavailable
from bus.rabbit_consumer import BROKER_CALL_SECONDS, transient
from runtime.broker_urls import BrokerNodes

log = structlog.get_logger(__name__)

Restore = Callable[[AbstractConnection], Awaitable[None]]


class RabbitLink:
    """One connection at a time, to the first node that answers; `restore` reopens what its
    owner needs on it, after every connect and whenever `repair` is asked (a channel closed
    under an open connection)."""

    def __init__(self, nodes: BrokerNodes, restore: Restore, *, timeout: float) -> None:
        self._nodes = nodes
        self._restore = restore
        self._timeout = timeout
        self._first = 0  # the node the next round starts with
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connection: AbstractConnection | None = None

    @property
    def up(self) -> bool:
        connection = self.connection
        return connection is not None and connection.connected.is_set()

    async def open(self) -> None:
        """Connect and restore once; BusUnavailable when no node answers, BusError when one
        refuses (the login, a declaration). Then keep the link up until `close`."""
        await self._connect()
        self._task = asyncio.create_task(self._keep_up(), name="kiln-broker-link")

    def repair(self) -> None:
        """Ask the loop to restore what closed (it reconnects first when the connection did)."""
        self._wake.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        connection, self.connection = self.connection, None
        if connection is not None:
            await _close(connection)

    async def _keep_up(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            wait = self._nodes.reconnect_seconds
            try:
                await self._repair_or_reconnect()
            except BusError as exc:
                log.warning("bus.reconnect_failed", error=str(exc), retry_in_seconds=wait)
            except Exception:  # the loop must outlive whatever the client library raises
                log.exception("bus.reconnect_crashed", retry_in_seconds=wait)
            else:
                continue
            await asyncio.sleep(wait)
            self._wake.set()

    async def _repair_or_reconnect(self) -> None:
        connection = self.connection
        if connection is not None and self.up:
            try:
                with transient("reopen channels"):
                    await self._restore(connection)
                return
            except BusUnavailable:
                if self.up:
                    raise  # the connection is fine, a channel would not open: wait, retry
        await self._reconnect()

    async def _reconnect(self) -> None:
        lost, self.connection = self.connection, None
        if lost is not None:
            await _close(lost)
        await self._connect()

    async def _connect(self) -> None:
        """Try each node once, from the one after the node last connected to."""
        urls = self._nodes.urls
        failure: BusUnavailable | None = None
        for _ in urls:
            url = urls[self._first]
            self._first = (self._first + 1) % len(urls)
            node = f"{url.host}:{url.port}"
            try:
                with transient(f"connect to {node}"):
                    connection = await aio_pika.connect(url, timeout=self._timeout)
            except BusUnavailable as exc:
                failure = exc
                continue
            connection.close_callbacks.add(self._on_connection_closed)
            try:
                with transient(f"restore on {node}"):
                    await self._restore(connection)
            except BaseException:
                await _close(connection)
                raise
            self.connection = connection
            log.info("bus.connected", node=node, nodes=len(urls))
            return
        assert failure is not None
        raise failure

    def _on_connection_closed(self, sender: Any, *_: Any) -> None:
        if sender is self.connection:
            log.warning("bus.connection_lost")
            self._wake.set()


async def _close(connection: AbstractConnection) -> None:
    with contextlib.suppress(TimeoutError, *CONNECTION_EXCEPTIONS):
        async with asyncio.timeout(BROKER_CALL_SECONDS):
            await connection.close()
