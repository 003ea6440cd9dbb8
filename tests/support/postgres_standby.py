"""A PostgreSQL primary and its streaming standby, of one test's own, for failover faults: the
primary dies like a machine (SIGKILL), the standby is promoted, and clients given both hosts
in one URL (`target_session_attrs=read-write`) find the new primary."""

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from support.kiln_processes import accepts, free_port, wait_until
from support.private_postgres import (
    BIN,
    PG_CTL_SECONDS,
    PrivatePostgres,
    as_postgres,
    owned_by_os_user,
)

STANDBY_NAME = "kiln_standby"  # its application_name, which the primary waits for
# initdb's pg_hba.conf already trusts replication connections from 127.0.0.1.
PRIMARY_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "4",  # the standby's, and pg_basebackup's two
    # A commit returns once the standby has flushed it too. fsync stays off: a server is
    # killed, never its machine, so what it wrote still reaches the disk.
    "synchronous_standby_names": f"'ANY 1 ({STANDBY_NAME})'",
    "synchronous_commit": "on",
}
STANDBY_SETTINGS = {
    "hot_standby": "on",
    "synchronous_commit": "on",
    "synchronous_standby_names": "''",  # promoted, it has no standby of its own to wait for
    # Promoted as its WAL stream has just broken, it waits this long before noticing (5 s by
    # default); it retries connecting to the lost primary as often meanwhile.
    "wal_retrieve_retry_interval": "'100ms'",
}
HAS_DATABASE = "SELECT count(*) FROM pg_database WHERE datname = $1"
SYNC_STATE = (
    "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1"
    " AND state = 'streaming' AND sync_state IN ('sync', 'quorum')"
)


class PostgresPair:
    """The primary and the standby streaming from it, each a PrivatePostgres on a port of its
    own; after `promote`, the standby is the primary."""

    def __init__(self, primary: PrivatePostgres, standby: PrivatePostgres) -> None:
        self.primary = primary
        self.standby = standby

    def multi_host_url(self, database: str = "postgres") -> str:
        """One URL naming both servers, for a client to connect to whichever is writable."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    async def create_database(self, name: str) -> str:
        """Create a database on the primary; its multi-host URL, once the standby has it too
        (a commit waits for the standby to flush it, not to replay it: a client trying the
        standby first would find no such database and try no further)."""
        await self.primary.create_database(name)
        await wait_until(lambda: self._standby_has(name), PG_CTL_SECONDS, f"{name} replayed")
        return self.multi_host_url(name)

    async def _standby_has(self, database: str) -> bool:
        conn = await asyncpg.connect(self.standby.url())
        try:
            return bool(await conn.fetchval(HAS_DATABASE, database))
        finally:
            await conn.close()

    async def is_synchronous(self) -> bool:
        """Whether the standby streams from the primary and the primary's commits wait for it
        (pg_stat_replication on the primary)."""
        conn = await asyncpg.connect(self.primary.url())
        try:
            return bool(await conn.fetchval(SYNC_STATE, STANDBY_NAME))
        finally:
            await conn.close()

    async def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and its children at once, as its machine dying
        would; return once the postmaster is dead (its port refuses connections)."""
        self.primary.kill()
        await wait_until(self._primary_gone, PG_CTL_SECONDS, "the primary killed")

    async def _primary_gone(self) -> bool:
        return not self.primary.alive() and not await accepts(self.primary.port)

    async def promote(self) -> None:
        """`pg_ctl promote -w` on the standby: it returns once the standby accepts writes."""
        timeout = str(PG_CTL_SECONDS)
        await as_postgres(BIN / "pg_ctl", "promote", "-w", "-t", timeout, "-D", self.standby.data)


@contextlib.asynccontextmanager
async def postgres_pair(max_connections: int = 20) -> AsyncIterator[PostgresPair]:
    """A fresh primary and a standby cloned from it (`pg_basebackup -R`), started; yielded once
    the standby streams synchronously. Both are stopped and their files removed after,
    whatever happened."""
    workdir = Path(tempfile.mkdtemp(prefix="kiln-pg-pair-"))
    workdir.chmod(0o755)  # the servers run as the postgres OS user, in directories under it
    primary = PrivatePostgres(
        owned_by_os_user(workdir / "primary"), free_port(), max_connections, PRIMARY_SETTINGS
    )
    standby: PrivatePostgres | None = None
    try:
        await primary.init()
        await primary.start()
        # Chosen once the primary listens on its own port, so that the two differ.
        standby = PrivatePostgres(
            owned_by_os_user(workdir / "standby"), free_port(), max_connections, STANDBY_SETTINGS
        )
        await _clone(primary, standby)
        await standby.start()
        pair = PostgresPair(primary, standby)
        await wait_until(pair.is_synchronous, PG_CTL_SECONDS, "the standby streaming in sync")
        yield pair
    finally:
        for server in (standby, primary):
            if server is not None:
                await server.shut_down()
        shutil.rmtree(workdir, ignore_errors=True)


async def _clone(primary: PrivatePostgres, standby: PrivatePostgres) -> None:
    """Make the standby's data directory a base backup of the primary's, with standby.signal
    and a primary_conninfo naming it STANDBY_NAME (-R), and its own settings after the
    primary's (the backup copies postgresql.conf)."""
    conninfo = f"host=127.0.0.1 port={primary.port} user=postgres application_name={STANDBY_NAME}"
    await as_postgres(
        BIN / "pg_basebackup",
        "--pgdata", standby.data,
        "--dbname", conninfo,
        "--write-recovery-conf",
        "--wal-method", "stream",
        "--checkpoint", "fast",
        "--no-sync",
    )  # fmt: skip
    standby.configure()
