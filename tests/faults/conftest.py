"""Fault tests run real `kiln gateway` / `kiln worker` processes on PostgreSQL (a database per
test) and RabbitMQ (a vhost per test), importing distinct qcow2 images from a throttled local
HTTP server. Tests that stop or exhaust PostgreSQL do it to a private server of their own."""

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from support.amqp_tap import EventTap
from support.auth import bearer
from support.image_source import ImageSource, make_qcow2_images
from support.kiln_processes import Deployment, deployed
from support.private_postgres import PrivatePostgres, private_postgres

IMAGE_COUNT = 30
PRIVATE_PG_CONNECTIONS = 10  # few, so that a test can take them all quickly

# Short enough that a dead worker's leases run out within a test, long enough for renewals
# (every third of the lease) to keep up under load.
LEASE_SECONDS = 2.0
RECONCILE_SECONDS = 0.5
PREFETCH = 8


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The directory of the test images and their names, each with content of its own."""
    directory = tmp_path_factory.mktemp("fault-images")
    return directory, make_qcow2_images(directory, IMAGE_COUNT)


@pytest.fixture
def image_names(images: tuple[Path, list[str]]) -> list[str]:
    return images[1]


@pytest.fixture
async def source(images: tuple[Path, list[str]]) -> AsyncIterator[ImageSource]:
    served = ImageSource(images[0])
    await served.start()
    yield served
    await served.close()


@pytest.fixture
async def deployment(
    tmp_path: Path, postgres_url: str, rabbit_url: str
) -> AsyncIterator[Deployment]:
    async with deployed(
        tmp_path,
        database_url=postgres_url,
        broker_url=rabbit_url,
        worker_lease_seconds=LEASE_SECONDS,
        worker_reconcile_seconds=RECONCILE_SECONDS,
        worker_prefetch=PREFETCH,
    ) as kiln:
        yield kiln


@pytest.fixture
async def private_pg() -> AsyncIterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own, started; gone after the test, whatever happened."""
    async with private_postgres(max_connections=PRIVATE_PG_CONNECTIONS) as server:
        yield server


@pytest.fixture
async def events(rabbit_url: str) -> AsyncIterator[EventTap]:
    """Not started: a test starts it once a gateway has declared the topology."""
    tap = EventTap(rabbit_url)
    yield tap
    await tap.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, headers=bearer()) as session:
        yield session
