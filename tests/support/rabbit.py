"""Per-test RabbitMQ vhosts through rabbitmqctl (the broker must be local)."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from bus import BusUnavailable, OutgoingMessage, RabbitBus
from contracts.names import COMMANDS_EXCHANGE

BROKER = "amqp://guest:guest@127.0.0.1:5672"


async def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl quietly; its stdout, or RuntimeError when it fails."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {err.decode() or out.decode()}")
    return out.decode()


@contextlib.asynccontextmanager
async def temporary_vhost() -> AsyncIterator[str]:
    """A fresh vhost for one test, deleted afterwards."""
    name = f"kiln-test-{uuid.uuid4().hex}"
    await rabbitmqctl("add_vhost", name)
    try:
        await rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        await rabbitmqctl("delete_vhost", name)


async def disconnected(bus: RabbitBus) -> None:
    """Until the client has noticed that its connection is gone."""
    while bus.connected:
        await asyncio.sleep(0.01)


async def publish_until_confirmed(bus: RabbitBus, command: OutgoingMessage) -> None:
    """Publish `command` to the commands exchange, retrying on BusUnavailable as a caller would."""
    while True:
        try:
            await bus.publish(COMMANDS_EXCHANGE, [command])
            return
        except BusUnavailable:
            await asyncio.sleep(0.05)
