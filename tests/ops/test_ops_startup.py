"""A process started before its database or broker waits for them, one log line per attempt,
up to KILN_STARTUP_TIMEOUT_SECONDS; then it exits 1 with one line and no traceback. A URL that
cannot work stops it at once, exit 2."""

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from kiln.startup import without_password
from support.kiln_processes import KILN, Deployment, free_port, wait_until
from support.private_postgres import private_postgres

PASSWORD = "pg-secret-never-logged"  # trust auth takes any password


def closed_port_url(scheme: str) -> str:
    return f"{scheme}://guest:{PASSWORD}@127.0.0.1:{free_port()}/kiln"


async def run_to_exit(role: str, env: dict[str, str], timeout: float = 20) -> dict[str, Any]:
    """Run `kiln role` until it exits: its exit code, seconds, log lines and stderr lines."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        str(KILN), role, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    return {
        "rc": process.returncode,
        "seconds": time.monotonic() - started,
        "logs": [orjson.loads(line) for line in stdout.splitlines() if line.startswith(b"{")],
        "stderr": stderr.decode().splitlines(),
    }


def waits(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "startup.waiting"]


async def test_a_gateway_waits_for_its_database_then_serves(
    tmp_path: Path, rabbit_url: str
) -> None:
    async with private_postgres() as server:
        url = await server.create_database("kiln")
        await server.stop("fast")
        with_password = url.replace("postgres@", f"postgres:{PASSWORD}@")
        kiln = Deployment(tmp_path, database_url=with_password, broker_url=rabbit_url)
        try:
            gateway = await kiln.start_gateway(startup_timeout_seconds=30)
            await wait_until(lambda: len(waits(gateway.logs())) >= 2, 10, "two waiting lines")
            await server.start()
            await gateway.wait_listening()
            async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/readyz") as r:
                assert r.status == 200, await r.text()
        finally:
            assert await kiln.close() == []
    lines = waits(gateway.logs())
    assert [entry["attempt"] for entry in lines] == list(range(1, len(lines) + 1))
    for entry in lines:
        assert entry["level"] == "warning"
        assert entry["waiting_for"] == f"PostgreSQL at KILN_DATABASE_URL={url}".replace(
            "postgres@", "postgres:***@"
        )
        assert "connection refused" in entry["error"]
    assert PASSWORD not in gateway.text()


@pytest.mark.parametrize("role", ["gateway", "worker", "dev"])
async def test_a_database_never_up_ends_start_up_after_the_timeout(
    tmp_path: Path, role: str
) -> None:
    database_url = closed_port_url("postgresql")
    broker_url = "memory://" if role == "dev" else "amqp://guest:guest@127.0.0.1:5672/"
    kiln = Deployment(tmp_path, database_url=database_url, broker_url=broker_url)
    ended = await run_to_exit(role, kiln.env(startup_timeout_seconds=1.5, http_port=free_port()))

    assert ended["rc"] == 1, ended
    assert 1.5 <= ended["seconds"] < 10
    (line,) = ended["stderr"]
    assert line.startswith("Error: gave up waiting for PostgreSQL at KILN_DATABASE_URL=")
    assert "KILN_STARTUP_TIMEOUT_SECONDS=1.5" in line and "connection refused" in line
    assert PASSWORD not in line
    assert len(waits(ended["logs"])) >= 3


async def test_a_broker_never_up_ends_start_up_after_the_timeout(
    tmp_path: Path, postgres_url: str
) -> None:
    kiln = Deployment(tmp_path, database_url=postgres_url, broker_url=closed_port_url("amqp"))
    ended = await run_to_exit("worker", kiln.env(startup_timeout_seconds=1.5))

    assert ended["rc"] == 1, ended
    # aiormq logs each failed connection too; Kiln's own last word is one line
    assert not any("Traceback" in line for line in ended["stderr"]), ended["stderr"]
    assert ended["stderr"][-1].startswith("Error: gave up waiting for RabbitMQ at KILN_BROKER_URL")
    assert PASSWORD not in "".join(ended["stderr"])
    lines = waits(ended["logs"])
    assert len(lines) >= 3 and all("KILN_BROKER_URL" in e["waiting_for"] for e in lines)


@pytest.mark.parametrize(
    ("database_url", "why"),
    [
        ("postgresql://postgres@127.0.0.1:5432/kiln_no_such_database", "does not exist"),
        ("postgresql://kiln_no_such_role@127.0.0.1:5432/postgres", "does not exist"),
        ("postgresql://postgres@127.0.0.1:port/postgres", "malformed"),
    ],
)
async def test_a_database_url_that_cannot_work_stops_start_up_at_once(
    tmp_path: Path, database_url: str, why: str
) -> None:
    kiln = Deployment(tmp_path, database_url=database_url, broker_url="amqp://127.0.0.1:5672/")
    ended = await run_to_exit("gateway", kiln.env(startup_timeout_seconds=30))

    assert ended["rc"] == 2, ended
    assert ended["seconds"] < 10
    errors = [line for line in ended["stderr"] if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: bad setting KILN_DATABASE_URL: ")
    assert why in errors[0]
    assert not any("Traceback" in line for line in ended["stderr"])
    assert waits(ended["logs"]) == []


async def test_a_broker_password_refused_stops_start_up_at_once(
    tmp_path: Path, postgres_url: str, vhost: str
) -> None:
    refused = f"amqp://guest:{PASSWORD}@127.0.0.1:5672/{vhost}"
    kiln = Deployment(tmp_path, database_url=postgres_url, broker_url=refused)
    ended = await run_to_exit("worker", kiln.env(startup_timeout_seconds=30))

    assert ended["rc"] == 2, ended
    assert ended["seconds"] < 10
    errors = [line for line in ended["stderr"] if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: bad setting KILN_BROKER_URL: ")
    assert "ACCESS_REFUSED" in errors[0]
    assert waits(ended["logs"]) == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://kiln:s3cret@db:5432/kiln", "postgresql://kiln:***@db:5432/kiln"),
        ("amqp://guest:p%40ss@rabbit/", "amqp://guest:***@rabbit/"),
        (
            "postgresql://db/kiln?user=kiln&password=s3cret",
            "postgresql://db/kiln?user=kiln&password=***",
        ),
        ("postgresql://kiln@db/kiln", "postgresql://kiln@db/kiln"),
        ("postgresql://kiln:s3cret@[::1:5432/kiln", "postgresql://kiln:***@[::1:5432/kiln"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert without_password(url) == shown
