"""Fixtures shared by every test package: a fresh database on each backend, a fresh
RabbitMQ vhost. Real-service fixtures fail (never skip) when the service is missing."""

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from support.rabbit import BROKER, rabbitmqctl, temporary_vhost

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"kiln_test_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that asks for it runs once per store backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kiln.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def vhost() -> AsyncIterator[str]:
    async with temporary_vhost() as name:
        yield name


@pytest.fixture
def rabbit_url(vhost: str) -> str:
    return f"{BROKER}/{vhost}"


@pytest.fixture
def ctl() -> Callable[..., Awaitable[str]]:
    """rabbitmqctl, for tests that inspect the broker."""
    return rabbitmqctl


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The common umask 022, under which what is not made private comes out readable to all
    (for the processes a test starts too)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by what it needs, for subsets such as `-m "not slow and not rabbit"`:
    `postgres` and `rabbit` by the fixtures and backend parameters it uses, `faults` for the
    fault suite, `slow` for the fault suite and every test that sets a timeout of its own."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = " ".join(map(str, callspec.params.values())) if callspec else ""
        if "postgres_url" in names or "postgres" in params:
            item.add_marker("postgres")
        if names & {"vhost", "rabbit_url"} or "rabbit" in params:
            item.add_marker("rabbit")
        if "tests/faults/" in item.nodeid:
            item.add_marker("faults")
        if "tests/faults/" in item.nodeid or item.get_closest_marker("timeout"):
            item.add_marker("slow")
