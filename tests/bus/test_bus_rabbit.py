"""What only RabbitMQ can show: declared queue types and broker failures."""

import asyncio
import json
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from structlog.testing import capture_logs
from yarl import URL

from bus import BusError, BusUnavailable, OutgoingMessage, RabbitBus
from bus.topology import (
    COMMANDS_EXCHANGE,
    CREATE_QUEUE,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DELETE_QUEUE,
    DELIVERY_LIMIT,
    QUEUES,
)
from support.rabbit import BROKER, disconnected, publish_until_confirmed
from support.tcp_proxy import TcpProxy

COMMAND = OutgoingMessage(routing_key=CREATE_QUEUE, body=b"{}", message_id="cmd-1")


async def test_command_queues_are_quorum_queues_with_a_delivery_limit(
    rabbit: RabbitBus, vhost: str, ctl: Callable[..., Awaitable[str]]
) -> None:
    listing = await ctl(
        "list_queues", "-p", vhost, "name", "type", "arguments", "--formatter", "json"
    )

    queues = {row["name"]: row for row in json.loads(listing)}
    for name in (CREATE_QUEUE, DELETE_QUEUE):
        assert queues[name]["type"] == "quorum"
        assert {key: value for key, _, value in queues[name]["arguments"]} == {
            "x-queue-type": "quorum",
            "x-quorum-initial-group-size": 3,
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        }
    assert queues[DEAD_LETTER_QUEUE]["type"] == "quorum"


async def test_second_bus_accepts_the_declared_topology(rabbit: RabbitBus, rabbit_url: str) -> None:
    other = RabbitBus(rabbit_url)
    await other.start()
    try:
        await other.publish(COMMANDS_EXCHANGE, [COMMAND])
    finally:
        await other.close()


async def test_closed_bus_refuses_to_publish(rabbit: RabbitBus) -> None:
    await rabbit.close()

    with pytest.raises(BusUnavailable):
        await rabbit.publish(COMMANDS_EXCHANGE, [COMMAND])


async def test_unreachable_broker_is_unavailable() -> None:
    bus = RabbitBus("amqp://guest:guest@127.0.0.1:1/", timeout=2.0)

    with pytest.raises(BusUnavailable):
        await bus.start()
    assert not bus.connected


async def test_a_refused_login_is_not_unavailable() -> None:
    """Retrying the same credentials cannot help: a BusError, never a BusUnavailable."""
    bus = RabbitBus("amqp://guest:not-the-password@127.0.0.1:5672/", timeout=2.0)

    with pytest.raises(BusError, match="refused") as raised:
        await bus.start()
    assert not isinstance(raised.value, BusUnavailable)
    assert not bus.connected


async def test_publish_before_start_is_unavailable() -> None:
    with pytest.raises(BusUnavailable):
        await RabbitBus("amqp://guest:guest@127.0.0.1:5672/").publish(COMMANDS_EXCHANGE, [COMMAND])


async def test_bus_is_unavailable_while_reconnecting_then_recovers(vhost: str, inbox) -> None:
    # Through a proxy that refuses connections until restored, so that the cut lasts: closed
    # by the broker itself (the next test), the client may be connected again before a test
    # can look, since aio-pika reconnects at once when its last connect is older than the
    # reconnect interval; watching for that gap made this test flaky.
    async with TcpProxy() as proxy:
        through_proxy = URL(BROKER).with_port(proxy.port) / vhost
        bus = RabbitBus(f"{through_proxy}?reconnect_interval=0.2")
        await bus.start()
        try:
            received = inbox()
            await bus.consume(CREATE_QUEUE, received, prefetch=1)

            await proxy.cut()
            await asyncio.wait_for(disconnected(bus), 5.0)
            with pytest.raises(BusUnavailable):
                await bus.publish(COMMANDS_EXCHANGE, [COMMAND])

            await proxy.restore()
            await asyncio.wait_for(publish_until_confirmed(bus, COMMAND), 10.0)
            assert (await received.next()).message_id == COMMAND.message_id
        finally:
            await bus.close()


async def test_bus_recovers_when_the_broker_closes_its_connection(
    rabbit_url: str, vhost: str, ctl: Callable[..., Awaitable[str]], inbox
) -> None:
    bus = RabbitBus(f"{rabbit_url}?reconnect_interval=0.2")
    await bus.start()
    try:
        received = inbox()
        await bus.consume(CREATE_QUEUE, received, prefetch=1)
        before = await client_ports(ctl, vhost)

        await ctl("close_all_connections", "-p", vhost, "kiln test")
        await asyncio.wait_for(publish_until_confirmed(bus, COMMAND), 10.0)

        assert (await received.next()).message_id == COMMAND.message_id
        after = await client_ports(ctl, vhost)
        assert before and after and not before & after  # connected again, anew
    finally:
        await bus.close()


async def client_ports(ctl: Callable[..., Awaitable[str]], vhost: str) -> set[int]:
    """The client ports of the broker's connections in `vhost`."""
    listing = await ctl("list_connections", "vhost", "peer_port", "--formatter", "json")
    return {row["peer_port"] for row in json.loads(listing) if row["vhost"] == vhost}


async def test_conflicting_queue_declaration_is_a_bus_error(rabbit_url: str) -> None:
    connection = await aio_pika.connect(rabbit_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(CREATE_QUEUE, durable=True)
    bus = RabbitBus(rabbit_url)

    with pytest.raises(BusError) as raised:
        await bus.start()

    assert not isinstance(raised.value, BusUnavailable)
    assert not bus.connected


@pytest.mark.parametrize("existing", [None, 1])
async def test_a_queue_created_with_another_group_size_keeps_it(
    rabbit_url: str, vhost: str, ctl: Callable[..., Awaitable[str]], existing: int | None
) -> None:
    # As declared before Kiln set a size (None), or with another KILN_BROKER_QUORUM_SIZE.
    arguments = QUEUES[0].arguments(existing)
    connection = await aio_pika.connect(rabbit_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(CREATE_QUEUE, durable=True, arguments=dict(arguments))
    bus = RabbitBus(rabbit_url, quorum_size=3)

    with capture_logs() as logs:
        await bus.start()
    try:
        await bus.publish(COMMANDS_EXCHANGE, [COMMAND])
    finally:
        await bus.close()

    kept = [entry for entry in logs if entry["event"] == "bus.queue_group_size_kept"]
    assert [(e["queue"], e["size"], e["asked"]) for e in kept] == [(CREATE_QUEUE, existing, 3)]
    listing = await ctl("list_queues", "-p", vhost, "name", "arguments", "--formatter", "json")
    declared = {
        row["name"]: dict((k, v) for k, _, v in row["arguments"]) for row in json.loads(listing)
    }
    assert declared[CREATE_QUEUE].get("x-quorum-initial-group-size") == existing
    assert declared[DELETE_QUEUE]["x-quorum-initial-group-size"] == 3
