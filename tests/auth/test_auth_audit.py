"""One structured `audit` line per mutating call (subject, method, resource, result), none for
reads; and permission checks that stay cheap: one statement per check, an index lookup, however
many bindings the store holds."""

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from api.settings import GatewaySettings
from bus.memory import MemoryBus
from gateway.app import create_app
from store import bindings
from store.db import Connection, Database
from support.auth import ADMIN, bearer
from tests.auth.conftest import Caller
from tests.auth.test_auth_roles import binding, grant_folder, grant_image
from tests.gateway.conftest import FOLDER, Api

FOLDERS = "/resource-manager/v1/folders"


def audited(logs: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [
        (line["subject"], line["method"], line["resource"], line["result"])
        for line in logs
        if line["event"] == "audit"
    ]


async def test_every_mutating_call_leaves_one_audit_line(
    api: Caller, caller: Callable[..., Caller]
) -> None:
    await grant_folder(api, FOLDER, binding("viewer"))
    bob = caller("bob")
    with capture_logs() as logs:
        created = (await api.create()).json
        image_id, operation_id = created["metadata"]["imageId"], created["id"]
        await api.get(image_id)
        await api.list()
        await bob.update(image_id, {"updateMask": "description", "description": "x"})
        await bob.create()
        await caller("eve").delete(image_id)
        await api.create_raw({"folderId": FOLDER, "uri": "ftp://example.com/disk"})
        await api.update_bindings(
            image_id, {"accessBindingDeltas": [{"action": "ADD", "accessBinding": binding("x")}]}
        )
        await api.call(
            "POST", f"{FOLDERS}/{FOLDER}:setAccessBindings", json_body={"accessBindings": []}
        )
        await api.delete(image_id)
        await api.cancel(operation_id, "GET")

    assert audited(logs) == [
        (ADMIN, "ImageService.Create", f"folders/{FOLDER}", "ok"),
        ("bob", "ImageService.Update", f"images/{image_id}", "PERMISSION_DENIED"),
        ("bob", "ImageService.Create", f"folders/{FOLDER}", "PERMISSION_DENIED"),
        ("eve", "ImageService.Delete", f"images/{image_id}", "NOT_FOUND"),
        (ADMIN, "ImageService.Create", f"folders/{FOLDER}", "INVALID_ARGUMENT"),
        (ADMIN, "ImageService.UpdateAccessBindings", f"images/{image_id}", "INVALID_ARGUMENT"),
        (ADMIN, "FolderService.SetAccessBindings", f"folders/{FOLDER}", "ok"),
        (ADMIN, "ImageService.Delete", f"images/{image_id}", "ok"),
        (ADMIN, "OperationService.Cancel", f"operations/{operation_id}", "ok"),
    ]
    assert all(line["log_level"] == "info" for line in logs if line["event"] == "audit")


# ---- the cost of a check ---------------------------------------------------------------------


class CountingConnection:
    def __init__(self, conn: Connection, statements: list[str]) -> None:
        self.dialect = conn.dialect
        self._conn = conn
        self._statements = statements

    async def execute(self, sql: str, *args: Any) -> int:
        self._statements.append(sql)
        return await self._conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self._statements.append(sql)
        return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self._statements.append(sql)
        return await self._conn.fetchrow(sql, *args)


class CountingDatabase:
    """The store, counting every statement the gateway sends it."""

    def __init__(self, db: Database) -> None:
        self.dialect = db.dialect
        self.statements: list[str] = []
        self._db = db

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[CountingConnection]:
        async with self._db.transaction() as conn:
            yield CountingConnection(conn, self.statements)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[CountingConnection]:
        async with self._db.reading() as conn:
            yield CountingConnection(conn, self.statements)

    async def close(self) -> None:
        await self._db.close()

    def on_bindings(self) -> list[str]:
        return [sql for sql in self.statements if "access_bindings" in sql]


@pytest.fixture
async def counted(
    db: Database, bus: MemoryBus, gateway_settings: GatewaySettings
) -> AsyncIterator[tuple[CountingDatabase, TestClient[Any, Any]]]:
    counting = CountingDatabase(db)
    app = await create_app(gateway_settings, counting, bus)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        yield counting, client


async def test_a_check_is_one_statement_whatever_the_number_of_bindings(
    api: Caller,
    counted: tuple[CountingDatabase, TestClient[Any, Any]],
    db: Database,
    request: pytest.FixtureRequest,
) -> None:
    counting, client = counted
    image_id = await api.new_image()
    await grant_folder(api, FOLDER, binding("viewer"))

    async def statements_of_bobs_reads() -> list[list[str]]:
        bob = Api(client, db, request.node.nodeid)
        per_call = []
        for call in (
            lambda: bob.call("GET", f"/compute/v1/images/{image_id}", headers=bearer("bob")),
            lambda: bob.call(
                "GET", "/compute/v1/images", params={"folderId": FOLDER}, headers=bearer("bob")
            ),
        ):
            counting.statements.clear()
            assert (await call()).status == 200
            per_call.append(counting.on_bindings())
        return per_call

    few = await statements_of_bobs_reads()
    for n in range(20):  # many more bindings, on other images and folders
        other = await api.new_image(folderId=f"other-{n}")
        await grant_image(api, other, *(binding("viewer", f"user-{n}-{m}") for m in range(10)))
        await grant_folder(api, f"other-{n}", binding("editor", f"user-{n}"), binding("viewer"))
    many = await statements_of_bobs_reads()

    assert few == many
    assert [len(statements) for statements in many] == [1, 1]
    assert all(sql.startswith("SELECT role_id") for statements in many for sql in statements)
    counting.statements.clear()
    admin = Api(client, db, request.node.nodeid)
    await admin.call("GET", f"/compute/v1/images/{image_id}", headers=bearer(ADMIN))
    assert counting.on_bindings() == []  # KILN_ADMINS need no lookup at all


async def test_the_check_is_an_index_lookup(db: Database) -> None:
    sql = bindings.GRANTS_SQL.format(subjects="?, ?, ?", resources="?, ?")
    args = ("bob", "allAuthenticatedUsers", "allUsers", "img0123456789abcdefgh", "folder/f1")
    async with db.transaction() as conn:
        if db.dialect == "sqlite":
            plan = " ".join(
                row["detail"] for row in await conn.fetch(f"EXPLAIN QUERY PLAN {sql}", *args)
            )
            assert "SEARCH access_bindings USING COVERING INDEX access_bindings_by_subject" in plan
        else:
            await conn.execute("SET LOCAL enable_seqscan = off")  # a tiny table: force the choice
            rows = await conn.fetch(f"EXPLAIN {sql}", *args)
            plan = " ".join(row["QUERY PLAN"] for row in rows)
            assert "Index Only Scan using access_bindings_by_subject" in plan, plan
