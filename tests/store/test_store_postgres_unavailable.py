"""PostgreSQL's "not now", at any step of a transaction, is StoreUnavailable naming the reason;
a URL that cannot work is StoreMisconfigured; any other error is left alone. The steps are
driven by a pool standing in for asyncpg's (real servers: tests/faults)."""

from typing import Any

import asyncpg
import pytest

from store import StoreMisconfigured, StoreUnavailable, open_database
from store.postgres import PostgresDatabase
from support.kiln_processes import free_port, wait_until

STEPS = ("acquire", "begin", "statement", "commit", "release")
# What asyncpg raises when PostgreSQL cannot serve now, and what the StoreUnavailable says.
NOT_NOW = [
    (asyncpg.CannotConnectNowError("the database system is starting up"), "starting up"),
    (asyncpg.AdminShutdownError("terminating connection due to administrator command"), "admin"),
    (asyncpg.CrashShutdownError("terminating connection because of crash"), "crash"),
    (asyncpg.TooManyConnectionsError("sorry, too many clients already"), "too many connections"),
    (asyncpg.DiskFullError("could not extend file"), "resources"),
    (asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT"), "read-only"),
    (asyncpg.TargetServerAttributeNotMatched("None of the hosts match"), "kind of server"),
    (asyncpg.ConnectionDoesNotExistError("connection was closed"), "connection was lost"),
    (asyncpg.InterfaceError("connection is closed"), "connection was lost"),
    (asyncpg.InternalClientError("cannot switch to state 11"), "connection is ending"),
    (TimeoutError(), "did not answer in time"),
    (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
]


class FailingPool:
    """A pool whose connections fail at one step with one error."""

    def __init__(self, step: str, error: Exception) -> None:
        self.step, self.error = step, error

    def fail_at(self, step: str) -> None:
        if step == self.step:
            raise self.error

    async def acquire(self) -> "FailingPool":
        self.fail_at("acquire")
        return self  # the connection too

    async def release(self, _: object) -> None:
        self.fail_at("release")

    def transaction(self) -> "FailingPool":
        return self

    async def __aenter__(self) -> None:
        self.fail_at("begin")

    async def __aexit__(self, *exc_info: object) -> None:
        self.fail_at("commit")

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.fail_at("statement")
        return []


@pytest.mark.parametrize(("error", "reason"), NOT_NOW, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("step", STEPS)
async def test_not_now_at_any_step_is_store_unavailable(
    step: str, error: Exception, reason: str
) -> None:
    db = PostgresDatabase(FailingPool(step, error))
    with pytest.raises(StoreUnavailable, match=r"^PostgreSQL unavailable: ") as raised:
        async with db.transaction() as conn:
            await conn.fetch("SELECT 1")
    assert reason in str(raised.value)
    assert raised.value.__cause__ is error


async def test_other_errors_are_left_alone() -> None:
    error = asyncpg.UndefinedTableError('relation "nowhere" does not exist')
    db = PostgresDatabase(FailingPool("statement", error))
    with pytest.raises(asyncpg.UndefinedTableError):
        async with db.reading() as conn:
            await conn.fetch("SELECT * FROM nowhere")


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("postgresql://postgres@127.0.0.1:5432/kiln_no_such_database", "does not exist"),
        ("postgresql://kiln_no_such_role@127.0.0.1:5432/postgres", "does not exist"),
        ("postgresql://postgres@127.0.0.1:port/postgres", "malformed"),
        ("postgresql://postgres@127.0.0.1:99999/postgres", "malformed"),
        ("postgresql://postgres@127.0.0.1:5432/postgres?sslmode=sometimes", "malformed"),
    ],
)
async def test_a_url_that_cannot_work_is_misconfigured(url: str, refused: str) -> None:
    with pytest.raises(StoreMisconfigured, match=refused):
        await PostgresDatabase.open(url)


async def test_no_server_or_the_wrong_kind_of_server_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="connection refused"):
        await PostgresDatabase.open(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    standby = "postgresql://postgres@127.0.0.1:5432/postgres?target_session_attrs=standby"
    with pytest.raises(StoreUnavailable, match="kind of server"):
        await PostgresDatabase.open(standby)


async def test_a_migration_cut_short_closes_the_pool(postgres_url: str) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        with pytest.raises(StoreUnavailable, match="read-only"):
            await open_database(postgres_url)

        async def closed() -> bool:
            sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
            return bool(await admin.fetchval(sessions, name) == 0)

        await wait_until(closed, 5, "the sessions of the pool ended")
    finally:
        await admin.close()
