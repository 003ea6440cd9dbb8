"""A broker URL naming several nodes: the bus connects to the first that answers, moves to the
next at once when the one it uses goes away, and reopens a channel the broker keeps nacking.
The nodes here are TCP proxies in front of the shared broker, which a test cuts and restores."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from bus import BusUnavailable, OutgoingMessage, RabbitBus
from bus.topology import COMMANDS_EXCHANGE, CREATE_QUEUE
from support.kiln_processes import free_port
from support.rabbit import disconnected, publish_until_confirmed
from support.tcp_proxy import TcpProxy

COMMAND = OutgoingMessage(routing_key=CREATE_QUEUE, body=b"{}", message_id="cmd-failover")
# Longer than any wait below: a test that passes did not wait for a reconnect round.
ROUND_SECONDS = 30


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    async with TcpProxy() as first, TcpProxy() as second:
        yield first, second


def cluster_url(vhost: str, *ports: int, reconnect: float = ROUND_SECONDS) -> str:
    hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
    return f"amqp://guest:guest@{hosts}/{vhost}?reconnect_interval={reconnect}"


async def test_a_node_that_does_not_answer_is_passed_over(vhost: str, inbox) -> None:
    bus = RabbitBus(cluster_url(vhost, free_port(), 5672))
    await bus.start()
    try:
        received = inbox()
        await bus.consume(CREATE_QUEUE, received, prefetch=1)
        await bus.publish(COMMANDS_EXCHANGE, [COMMAND])
        assert (await received.next()).message_id == COMMAND.message_id
    finally:
        await bus.close()


async def test_losing_the_node_in_use_moves_to_the_next_at_once(
    vhost: str, nodes: tuple[TcpProxy, TcpProxy], inbox
) -> None:
    first, second = nodes
    bus = RabbitBus(cluster_url(vhost, first.port, second.port))
    await bus.start()
    try:
        received = inbox()
        await bus.consume(CREATE_QUEUE, received, prefetch=1)

        await first.cut()  # and it stays away
        await asyncio.wait_for(disconnected(bus), 5.0)
        await asyncio.wait_for(publish_until_confirmed(bus, COMMAND), 5.0)

        assert (await received.next()).message_id == COMMAND.message_id  # consumer restored
    finally:
        await bus.close()


async def test_with_every_node_away_the_bus_is_unavailable_until_one_is_back(
    vhost: str, nodes: tuple[TcpProxy, TcpProxy]
) -> None:
    first, second = nodes
    bus = RabbitBus(cluster_url(vhost, first.port, second.port, reconnect=0.2))
    await bus.start()
    try:
        await first.cut()
        await second.cut()
        await asyncio.wait_for(disconnected(bus), 5.0)
        with pytest.raises(BusUnavailable):
            await bus.publish(COMMANDS_EXCHANGE, [COMMAND])

        await second.restore()
        await asyncio.wait_for(publish_until_confirmed(bus, COMMAND), 5.0)
    finally:
        await bus.close()


async def test_nacked_messages_are_sent_again_at_once_on_a_fresh_channel(
    rabbit_url: str, vhost: str, ctl: Callable[..., Awaitable[str]]
) -> None:
    # A full queue that rejects publishes is how a test makes RabbitMQ nack: past its limit
    # (a quorum queue takes one message beyond it), the broker answers Basic.Nack for every
    # message routed to it until the policy is gone.
    bus = RabbitBus(rabbit_url, timeout=8.0)
    await bus.start()
    try:
        policy = '{"max-length": 0, "overflow": "reject-publish"}'
        await ctl("set_policy", "-p", vhost, "--apply-to", "queues", "full", "^kiln", policy)
        await bus.publish(COMMANDS_EXCHANGE, [COMMAND])  # the one beyond the limit
        with capture_logs() as logs:
            publishing = asyncio.create_task(bus.publish(COMMANDS_EXCHANGE, [COMMAND]))
            await asyncio.sleep(1.0)  # the broker nacks it meanwhile, round after round
            await ctl("clear_policy", "-p", vhost, "full")
            await asyncio.wait_for(publishing, 5.0)  # confirmed within the same call
        events = [entry["event"] for entry in logs]
        assert events.count("bus.publish_unconfirmed") >= 2, events
        assert "bus.publishing_channel_reopened" in events, events
        await bus.publish(COMMANDS_EXCHANGE, [COMMAND])  # the fresh channel publishes on
    finally:
        await bus.close()
