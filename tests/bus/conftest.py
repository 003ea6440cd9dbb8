"""Fixtures that run every bus behaviour test on MemoryBus and on RabbitMQ.

The RabbitMQ variant needs the broker on 127.0.0.1:5672 and `rabbitmqctl`;
without them those tests fail, they are never skipped.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from bus import Bus, Delivery, MemoryBus, RabbitBus
from support.rabbit import BROKER, temporary_vhost

WAIT = 2.0  # seconds a test waits for something that must happen
QUIET = 0.3  # seconds a test watches for something that must not happen


@contextlib.asynccontextmanager
async def started(bus: Bus) -> AsyncIterator[Bus]:
    """`bus` started for the body, closed afterwards."""
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
async def rabbit(rabbit_url: str) -> AsyncIterator[RabbitBus]:
    bus = RabbitBus(rabbit_url)
    async with started(bus):
        yield bus


@pytest.fixture(params=["memory", "rabbit"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        async with started(MemoryBus()) as memory_bus:
            yield memory_bus
        return
    async with temporary_vhost() as name, started(RabbitBus(f"{BROKER}/{name}")) as rabbit_bus:
        yield rabbit_bus


class Inbox:
    """A handler that records deliveries and lets a test await them."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._arrived: asyncio.Queue[Delivery] = asyncio.Queue()

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self._arrived.put_nowait(delivery)

    async def next(self) -> Delivery:
        """The next delivery, failing the test if none comes within WAIT."""
        return await asyncio.wait_for(self._arrived.get(), WAIT)

    async def take(self, count: int) -> list[Delivery]:
        """The next `count` deliveries."""
        return [await self.next() for _ in range(count)]

    async def assert_quiet(self) -> None:
        """Fail if anything arrives within QUIET."""
        try:
            delivery = await asyncio.wait_for(self._arrived.get(), QUIET)
        except TimeoutError:
            return
        pytest.fail(f"unexpected delivery {delivery!r}")


@pytest.fixture
def inbox() -> Callable[[], Inbox]:
    """Makes Inbox handlers."""
    return Inbox
