"""A TCP proxy on 127.0.0.1 that a test can cut (every connection closed, new ones refused)
and restore, to put a network fault between Kiln's processes and RabbitMQ."""

import asyncio
import contextlib


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`.

    `cut()` stops listening (new connections are refused) and aborts every open connection on
    both sides; `restore()` listens again on the same port.
    """

    def __init__(self, target_port: int = 5672, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def is_cut(self) -> bool:
        return self._server is None

    async def start(self) -> None:
        """Listen on a free port (the first time) or on the port it had (after a cut)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def restore(self) -> None:
        await self.start()

    async def cut(self) -> None:
        """Refuse new connections and drop every open one, as a network partition would."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        pipes = list(self._pipes)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        await self.cut()

    async def __aenter__(self) -> "TcpProxy":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._server is None:
            client_w.transport.abort()
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client_w.transport.abort()
            return
        if self._server is None:  # cut while connecting upstream
            client_w.transport.abort()
            upstream_w.transport.abort()
            return
        self.accepted += 1
        writers = (client_w, upstream_w)
        self._writers.update(writers)
        pipes = [
            asyncio.create_task(_pump(client_r, upstream_w)),
            asyncio.create_task(_pump(upstream_r, client_w)),
        ]
        self._pipes.update(pipes)
        try:
            # Either direction ending ends the connection.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._pipes.difference_update(pipes)
            for writer in writers:
                writer.transport.abort()
            self._writers.difference_update(writers)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
