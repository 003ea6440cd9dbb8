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
    is thrown away) unless `settings` (postgresql.conf lines, over the defaults) say otherwise:
    stopped and started again as a test needs."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        max_connections: int,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = port
        self.max_connections = max_connections
        self.settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": "''",  # TCP only: no socket beside the shared server's
            "max_connections": str(max_connections),
            "superuser_reserved_connections": "0",  # the tests connect as a superuser
            "shared_buffers": "16MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **(settings or {}),
        }

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def init(self) -> None:
        await as_postgres(
            BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync"
        )
        self.configure()

    def configure(self) -> None:
        """Append `settings` to postgresql.conf (the last line for a name wins)."""
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in self.settings.items())

    async def start(self) -> None:
        """Start the server; return once it accepts connections."""
        log = self.workdir / "server.log"
        await as_postgres(
            BIN / "pg_ctl", "start", "-w", "-t", str(PG_CTL_SECONDS), "-D", self.data, "-l", log
        )

    async def stop(self, mode: StopMode = "fast", *, wait: bool = True) -> None:
        """`pg_ctl stop -m mode`. A smart stop waits for every session to end; with
        `wait=False` it returns at once, and the server refuses new connections meanwhile
        (57P03, "the database system is shutting down")."""
        waiting = "-w" if wait else "-W"
        timeout = str(PG_CTL_SECONDS)
        await as_postgres(
            BIN / "pg_ctl", "stop", "-m", mode, "-t", timeout, "-D", self.data, waiting
        )

    async def running(self) -> bool:
        """Whether a postmaster runs on the data directory (a stopping one too)."""
        return await as_postgres(BIN / "pg_ctl", "status", "-D", self.data, check=False) == 0

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

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid from its pid file (left behind when it is killed)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started, as a machine dying would (or
        when pg_ctl could not stop it). Each child runs in a session of its own: they are
        found as the postmaster's children, the postmaster stopped first to fork no more."""
        pid = self.postmaster_pid()
        if pid is None or not _is_postgres(pid):
            return  # not running: the pid, if the file is left, may be another process's
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGSTOP)
        for process in [pid, *_children(pid)]:
            with contextlib.suppress(OSError):
                os.kill(process, signal.SIGKILL)

    def alive(self) -> bool:
        """Whether the postmaster lives (unlike `running`, which counts a killed one not yet
        reaped, a zombie)."""
        pid = self.postmaster_pid()
        return pid is not None and _is_postgres(pid)

    async def shut_down(self) -> None:
        """Stop the server at once if it runs (`immediate`), or SIGKILL it if pg_ctl cannot."""
        if self.alive():
            try:
                await self.stop("immediate")
            except RuntimeError:
                self.kill()


@contextlib.asynccontextmanager
async def private_postgres(max_connections: int = 20) -> AsyncIterator[PrivatePostgres]:
    """A fresh server, started; stopped and its files removed after, whatever happened."""
    workdir = owned_by_os_user(Path(tempfile.mkdtemp(prefix="kiln-pg-")))
    server = PrivatePostgres(workdir, free_port(), max_connections)
    try:
        await server.init()
        await server.start()
        yield server
    finally:
        await server.shut_down()
        shutil.rmtree(workdir, ignore_errors=True)


def owned_by_os_user(directory: Path) -> Path:
    """`directory`, made if missing, given to the postgres OS user when the tests run as root."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        account = pwd.getpwnam(OS_USER)
        os.chown(directory, account.pw_uid, account.pw_gid)
    return directory


async def as_postgres(program: Path, *args: str | Path, check: bool = True) -> int:
    """Run a PostgreSQL program as the postgres OS user when the tests run as root. Cancelled
    (a test timing out), it is killed with what it started (runuser's child, initdb's), so
    that nothing writes on in a directory about to be removed."""
    prefix = ("runuser", "-u", OS_USER, "--") if os.geteuid() == 0 else ()
    process = await asyncio.create_subprocess_exec(
        *prefix,
        str(program),
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group
    )
    try:
        output, _ = await process.communicate()
    except BaseException:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    if check and process.returncode != 0:
        raise RuntimeError(f"{program.name} {' '.join(map(str, args))}: {output.decode()}")
    assert process.returncode is not None
    return process.returncode


def _is_postgres(pid: int) -> bool:
    """Whether `pid` is a live (not a zombie) postgres process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, _, rest = stat.partition(" (")[2].rpartition(") ")
    return name == "postgres" and rest[:1] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rpartition(") ")[2].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    return children
