"""The gateway's `/metrics`: request counts and latencies by method, route template and status,
operations started and finished, and every series Kiln defines, in Prometheus' text format."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from ops.opskit import Samples

from bus import MemoryBus
from gateway.app import create_app
from store import Database, open_database
from support.auth import bearer
from support.auth import gateway_settings as auth_settings

FOLDER = "b1gops"
SERIES = [
    ("kiln_http_requests", "counter"),
    ("kiln_http_request_duration_seconds", "histogram"),
    ("kiln_operations_started", "counter"),
    ("kiln_operations_finished", "counter"),
    ("kiln_import_size_bytes", "histogram"),
    ("kiln_import_duration_seconds", "histogram"),
    ("kiln_imports_in_flight", "gauge"),
    ("kiln_message_redeliveries", "counter"),
    ("kiln_dead_lettered_messages", "counter"),
    ("kiln_queue_depth_messages", "gauge"),
    ("kiln_outbox_backlog_messages", "gauge"),
    ("kiln_outbox_oldest_unsent_age_seconds", "gauge"),
    ("kiln_reconciler_redrives", "counter"),
]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(f"sqlite:///{tmp_path / 'kiln.db'}")
    yield database
    await database.close()


@pytest.fixture
async def client(db: Database) -> AsyncIterator[TestClient[Any, Any]]:
    bus = MemoryBus()
    await bus.start()
    app = await create_app(auth_settings(), db, bus)
    async with TestClient(TestServer(app), headers=bearer()) as test_client:
        yield test_client
    await bus.close()


async def metrics(client: TestClient[Any, Any]) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    return Samples(await response.text())


async def call(client: TestClient[Any, Any], method: str, path: str, **kw: Any) -> Any:
    response = await client.request(method, path, **kw)
    return response.status, await response.json()


async def test_every_series_is_exposed_with_its_type(client: TestClient[Any, Any]) -> None:
    page = await metrics(client)
    for name, kind in SERIES:
        assert name in page.families, name
        assert page.families[name].type == kind, name


async def test_requests_are_counted_by_route_template(client: TestClient[Any, Any]) -> None:
    before = await metrics(client)
    status, _ = await call(client, "GET", "/compute/v1/images/imgnotthere000000000")
    assert status == 404
    status, _ = await call(client, "GET", "/no/such/path")
    assert status == 404
    status, _ = await call(client, "GET", "/compute/v1/images", params={"folderId": FOLDER})
    assert status == 200
    after = await metrics(client)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    get_image = {"method": "GET", "route": "/compute/v1/images/{imageId}", "status": "404"}
    assert delta("kiln_http_requests_total", **get_image) == 1
    assert delta("kiln_http_request_duration_seconds_count", **get_image) == 1
    assert delta("kiln_http_request_duration_seconds_bucket", **get_image, le="+Inf") == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert delta("kiln_http_requests_total", **unmatched) == 1
    listed = {"method": "GET", "route": "/compute/v1/images", "status": "200"}
    assert delta("kiln_http_requests_total", **listed) == 1
    routes = {labels["route"] for labels in after.labels("kiln_http_requests_total")}
    assert not any("notthere" in route or "/no/such" in route for route in routes)


async def test_operations_started_and_finished(client: TestClient[Any, Any]) -> None:
    before = await metrics(client)
    create = {"folderId": FOLDER, "name": "ops", "uri": "https://images.example.com/x.qcow2"}
    status, created = await call(client, "POST", "/compute/v1/images", json=create)
    assert status == 200, created
    image_id, operation_id = created["metadata"]["imageId"], created["id"]
    status, _ = await call(
        client,
        "POST",
        "/compute/v1/images",
        json=create,
        headers={"Idempotency-Key": "k1"},
    )
    assert status == 409  # the name is taken: refused, no operation
    status, updated = await call(
        client,
        "PATCH",
        f"/compute/v1/images/{image_id}",
        json={"updateMask": "description", "description": "d"},
    )
    assert status == 200 and updated["done"], updated
    bindings = {"accessBindings": []}
    status, _ = await call(
        client, "POST", f"/compute/v1/images/{image_id}:setAccessBindings", json=bindings
    )
    assert status == 200
    status, cancelled = await call(client, "POST", f"/operations/{operation_id}:cancel")
    assert status == 200 and cancelled["error"]["code"] == 1, cancelled  # no worker held it
    after = await metrics(client)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    started = "kiln_operations_started_total"
    finished = "kiln_operations_finished_total"
    assert delta(started, kind="image.create") == 1
    assert delta(started, kind="image.update") == 1
    assert delta(started, kind="image.set_access_bindings") == 1
    assert delta(finished, kind="image.update", result="ok") == 1
    assert delta(finished, kind="image.set_access_bindings", result="ok") == 1
    assert delta(finished, kind="image.create", result="cancelled") == 1
    assert delta(finished, kind="image.create", result="ok") == 0
    cancel = {"method": "POST", "route": "/operations/{operationId}:cancel", "status": "200"}
    assert delta("kiln_http_requests_total", **cancel) == 1
    conflict = {"method": "POST", "route": "/compute/v1/images", "status": "409"}
    assert delta("kiln_http_requests_total", **conflict) == 1


async def test_request_id_is_echoed(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz", headers={"X-Request-Id": "ops-echo-1"})
    assert response.status == 200
    assert response.headers["X-Request-Id"] == "ops-echo-1"
    response = await client.get("/readyz")
    assert response.status == 200
    assert response.headers["X-Request-Id"]  # one is made up when none is given
