"""A PostgreSQL server of one test's own: `initdb` into a temporary directory, `pg_ctl` on a
free loopback port, for faults a test must not cause on the shared server (stopping it,
filling its connections, terminating its backends)."""

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import asyncpg

from support.kiln_processes import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"  # initdb and postgres refuse to run as root
PG_CTL_SECONDS = 30

StopMode = Literal["smart", "fast", "immediate"]


class PrivatePostgres:
    """One server, trust auth for user postgres on 127.0.0.1:`port`, durability off (its data
    is thrown away): stopped and started again as a test needs."""

    def __init__(self, workdir: Path, port: int, max_connections: int) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = port
        self.max_connections = max_connections

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def init(self) -> None:
        await _as_postgres(
            BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync"
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",  # TCP only: no socket beside the shared server's
            "max_connections": str(self.max_connections),
            "superuser_reserved_connections": "0",  # the tests connect as a superuser
            "shared_buffers": "16MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    async def start(self) -> None:
        """Start the server; return once it accepts connections."""
        log = self.workdir / "server.log"
        await _as_postgres(
            BIN / "pg_ctl", "start", "-w", "-t", str(PG_CTL_SECONDS), "-D", self.data, "-l", log
        )

    async def stop(self, mode: StopMode = "fast", *, wait: bool = True) -> None:
        """`pg_ctl stop -m mode`. A smart stop waits for every session to end; with
        `wait=False` it returns at once, and the server refuses new connections meanwhile
        (57P03, "the database system is shutting down")."""
        waiting = "-w" if wait else "-W"
        timeout = str(PG_CTL_SECONDS)
        await _as_postgres(
            BIN / "pg_ctl", "stop", "-m", mode, "-t", timeout, "-D", self.data, waiting
        )

    async def running(self) -> bool:
        """Whether a postmaster runs on the data directory (a stopping one too)."""
        return await _as_postgres(BIN / "pg_ctl", "status", "-D", self.data, check=False) == 0

    async def create_database(self, name: str) -> str:
        admin = await asyncpg.connect(self.url())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.url(name)

    async def terminate_backends(
        self, database: str, via: asyncpg.Connection | None = None
    ) -> None:
        """pg_terminate_backend of every session on `database` but the one it is done through
        (`via`, else a connection of its own), and wait until they are gone."""
        admin = via or await asyncpg.connect(self.url())
        try:
            terminated = await admin.fetchval(
                "SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", terminated
            )
            left = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])"
            while await admin.fetchval(left, terminated):
                await asyncio.sleep(0.02)  # polling the server's view of its backends
                # In a transaction (`via` may be in one) the view holds still unless cleared.
                await admin.execute("SELECT pg_stat_clear_snapshot()")
        finally:
            if via is None:
                await admin.close()

    def kill(self) -> None:
        """SIGKILL the postmaster, when pg_ctl could not stop it."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def private_postgres(max_connections: int = 20) -> AsyncIterator[PrivatePostgres]:
    """A fresh server, started; stopped and its files removed after, whatever happened."""
    workdir = Path(tempfile.mkdtemp(prefix="kiln-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(OS_USER)
        os.chown(workdir, account.pw_uid, account.pw_gid)
    server = PrivatePostgres(workdir, free_port(), max_connections)
    try:
        await server.init()
        await server.start()
        yield server
    finally:
        if await server.running():
            try:
                await server.stop("immediate")
            except RuntimeError:
                server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


async def _as_postgres(program: Path, *args: str | Path, check: bool = True) -> int:
    """Run a PostgreSQL program as the postgres OS user when the tests run as root."""
    prefix = ("runuser", "-u", OS_USER, "--") if os.geteuid() == 0 else ()
    process = await asyncio.create_subprocess_exec(
        *prefix,
        str(program),
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if check and process.returncode != 0:
        raise RuntimeError(f"{program.name} {' '.join(map(str, args))}: {output.decode()}")
    assert process.returncode is not None
    return process.returncode
