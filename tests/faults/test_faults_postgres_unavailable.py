"""Every "not now" from PostgreSQL (stopped, shutting down, out of connections, a session
terminated, read-only) answers 503 UNAVAILABLE through the gateway, never 500, without a
traceback in the logs; and the next request after the server is back succeeds."""

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from bus.memory import MemoryBus
from gateway.app import create_app
from store import open_database
from support.auth import gateway_settings
from support.image_api import FOLDER, ImageApi
from support.kiln_processes import wait_until
from support.private_postgres import PrivatePostgres

DATABASE = "kiln"
URI = "https://images.example.com/disk.qcow2"
IMAGES = "/compute/v1/images"
LIST = {"params": {"folderId": FOLDER}}
UNAVAILABLE = 14  # google.rpc.Code
# Calls that may find a session the server has just ended (it sent its last message, the
# socket is not closed yet): each answers 503, and the gateway's pool drops the session.
CALLS = 5
Logs = list[MutableMapping[str, Any]]


@pytest.fixture
async def api(private_pg: PrivatePostgres, http: aiohttp.ClientSession) -> AsyncIterator[ImageApi]:
    """An in-process gateway on the private server's database (and the in-process bus)."""
    db = await open_database(await private_pg.create_database(DATABASE))
    bus = MemoryBus()
    await bus.start()
    app = await create_app(gateway_settings(), db, bus)
    async with TestServer(app, host="127.0.0.1") as server:
        yield ImageApi(http, str(server.make_url("")).rstrip("/"))
    await bus.close()
    await db.close()


def reasons_logged(logs: Logs) -> set[str]:
    """Why the gateway answered 503; asserting that nothing was logged as an error."""
    assert [e for e in logs if e.get("exc_info") or e["log_level"] in ("error", "critical")] == []
    reasons = {e["error"] for e in logs if e["event"] == "dependency unavailable"}
    assert all(reason.startswith("PostgreSQL unavailable: ") for reason in reasons), reasons
    return reasons


async def unavailable(api: ImageApi, method: str, path: str, **kwargs: Any) -> str:
    """Make a call that must answer 503 UNAVAILABLE; the reason the gateway logged."""
    with capture_logs() as logs:
        status, body = await api.call(method, path, **kwargs)
    assert (status, body["code"]) == (503, UNAVAILABLE), (body, logs)
    (reason,) = reasons_logged(logs)
    return reason


async def unavailable_for(
    api: ImageApi, reason: str, method: str, path: str, **kwargs: Any
) -> None:
    """Calls answer 503 UNAVAILABLE, one of the first CALLS for `reason`."""
    reasons: list[str] = []
    while len(reasons) < CALLS:
        reasons.append(await unavailable(api, method, path, **kwargs))
        if reason in reasons[-1]:
            return
    raise AssertionError(f"no 503 for {reason!r}: {reasons}")


async def reads_and_writes_answer(api: ImageApi, name: str) -> None:
    image_id, _ = await api.create_ok(name, URI)
    assert (await api.image(image_id))["name"] == name


async def recovered(api: ImageApi, name: str) -> None:
    """Creates and reads answer again, after at most CALLS - 1 answers of 503."""
    for _ in range(CALLS):
        status, body = await api.create(name, URI)
        if status != 503:
            break
    assert status == 200, body
    assert (await api.image(body["metadata"]["imageId"]))["name"] == name


async def test_a_stopped_server_answers_503_and_the_next_call_after_it_starts_succeeds(
    api: ImageApi, private_pg: PrivatePostgres
) -> None:
    await reads_and_writes_answer(api, "before")
    await private_pg.stop("fast")

    await unavailable_for(api, "connection refused", "GET", IMAGES, **LIST)
    create = {"folderId": FOLDER, "name": "during", "uri": URI}
    assert "connection refused" in await unavailable(api, "POST", IMAGES, json=create)

    await private_pg.start()
    await reads_and_writes_answer(api, "after")


async def test_a_server_shutting_down_answers_503(
    api: ImageApi, private_pg: PrivatePostgres
) -> None:
    await reads_and_writes_answer(api, "before")
    # A smart shutdown waits for this session to end, refusing new ones meanwhile; the
    # gateway's own sessions are ended then, so that it has to open new ones.
    held = await asyncpg.connect(private_pg.url(DATABASE))
    await private_pg.stop("smart", wait=False)
    await private_pg.terminate_backends(DATABASE, via=held)

    await unavailable_for(api, "shutting down", "GET", IMAGES, **LIST)

    await held.close()
    await wait_until(lambda: _stopped(private_pg), 10, "the server ending its smart shutdown")
    await private_pg.start()
    await reads_and_writes_answer(api, "after")


async def test_a_server_out_of_connections_answers_503(
    api: ImageApi, private_pg: PrivatePostgres
) -> None:
    """Calls held up by a lock keep the gateway's connections; with every other slot of the
    server taken, the calls beyond them cannot have one."""
    await reads_and_writes_answer(api, "before")
    locker = await asyncpg.connect(private_pg.url(DATABASE))
    held: list[asyncpg.Connection] = []
    try:
        with capture_logs() as logs:
            async with locker.transaction():
                await locker.execute("LOCK TABLE images IN ACCESS EXCLUSIVE MODE")
                held = await _every_free_connection(private_pg)
                calls = [
                    asyncio.create_task(api.call("GET", IMAGES, **LIST))
                    for _ in range(private_pg.max_connections)
                ]
                await wait_until(lambda: any(c.done() for c in calls), 10, "a call answering")
            answers = await asyncio.gather(*calls)
    finally:
        for connection in [locker, *held]:
            await connection.close()

    refused = [(status, body["code"]) for status, body in answers if status != 200]
    assert refused and set(refused) == {(503, UNAVAILABLE)}, answers
    (reason,) = reasons_logged(logs)
    assert "too many connections" in reason
    await reads_and_writes_answer(api, "after")


async def test_a_session_terminated_mid_statement_answers_503(
    api: ImageApi, private_pg: PrivatePostgres
) -> None:
    await reads_and_writes_answer(api, "before")
    locker = await asyncpg.connect(private_pg.url(DATABASE))
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE images IN ACCESS EXCLUSIVE MODE")
            call = asyncio.create_task(unavailable(api, "GET", IMAGES, **LIST))
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            await wait_until(lambda: locker.fetchval(waiting), 10, "the list waiting for the lock")
            await private_pg.terminate_backends(DATABASE, via=locker)
            assert "the connection was lost" in await call
    finally:
        await locker.close()
    await recovered(api, "after")


async def test_a_read_only_server_answers_503_to_writes(
    api: ImageApi, private_pg: PrivatePostgres
) -> None:
    """As a primary demoted to a standby does: reads go on, writes are refused."""
    await reads_and_writes_answer(api, "before")
    await _default_read_only(private_pg, "on")

    create = {"folderId": FOLDER, "name": "during", "uri": URI}
    await unavailable_for(api, "read-only", "POST", IMAGES, json=create)
    assert (await api.call("GET", IMAGES, **LIST))[0] == 200

    await _default_read_only(private_pg, "off")
    await recovered(api, "after")


async def _stopped(server: PrivatePostgres) -> bool:
    return not await server.running()


async def _every_free_connection(server: PrivatePostgres) -> list[asyncpg.Connection]:
    """Connections to the server until it refuses one more."""
    held: list[asyncpg.Connection] = []
    while True:
        try:
            held.append(await asyncpg.connect(server.url()))
        except asyncpg.TooManyConnectionsError:
            return held


async def _default_read_only(server: PrivatePostgres, value: str) -> None:
    """Make the test database's sessions read-only (or not); its open ones end, to apply it."""
    admin = await asyncpg.connect(server.url())
    try:
        await admin.execute(
            f"ALTER DATABASE {DATABASE} SET default_transaction_read_only = {value}"
        )
    finally:
        await admin.close()
    await server.terminate_backends(DATABASE)
