"""A broker URL naming several nodes: the bus connects to the first that answers, moves to the
next at once when the one it uses goes away, and replaces a channel the broker keeps nacking.
The nodes here are TCP proxies in front of the shared broker, which a test cuts and restores.
Also what the bus repairs on a connection that stays up: a deleted queue or exchange."""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest
from structlog.testing import capture_logs

from bus import BusError, BusUnavailable, OutgoingMessage, RabbitBus
from bus.topology import COMMANDS_EXCHANGE, CREATE_QUEUE, DELETE_QUEUE
from support.kiln_processes import free_port, wait_until
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


async def nacking(
    bus: RabbitBus, ctl: Callable[..., Awaitable[str]], vhost: str, message: OutgoingMessage
) -> None:
    """From now on the broker nacks every message routed where `message` goes, until the
    policy `full` is cleared: the queue is full and rejects publishes. Past its limit a quorum
    queue takes one message more; `message` is that one."""
    policy = '{"max-length": 0, "overflow": "reject-publish"}'
    queue = f"^{re.escape(message.routing_key)}$"
    await ctl("set_policy", "-p", vhost, "--apply-to", "queues", "full", queue, policy)
    await bus.publish(COMMANDS_EXCHANGE, [message])


async def test_nacked_messages_are_sent_again_at_once_on_a_fresh_channel(
    rabbit_url: str, vhost: str, ctl: Callable[..., Awaitable[str]]
) -> None:
    bus = RabbitBus(rabbit_url, timeout=8.0)
    await bus.start()
    try:
        await nacking(bus, ctl, vhost, COMMAND)
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


async def test_a_deleted_queue_is_declared_again_and_its_consumer_restored(
    rabbit_url: str, vhost: str, ctl: Callable[..., Awaitable[str]], inbox
) -> None:
    bus = RabbitBus(rabbit_url)
    await bus.start()
    try:
        received = inbox()
        await bus.consume(CREATE_QUEUE, received, prefetch=1)
        await ctl("delete_queue", "-p", vhost, CREATE_QUEUE)  # the broker cancels the consumer

        async def consumed() -> bool:
            listing = await ctl("list_consumers", "-p", vhost, "queue_name", "--formatter", "json")
            return any(row["queue_name"] == CREATE_QUEUE for row in json.loads(listing))

        await wait_until(consumed, 10, "the consumer back on a declared queue")
        await bus.publish(COMMANDS_EXCHANGE, [COMMAND])
        assert (await received.next()).message_id == COMMAND.message_id
    finally:
        await bus.close()


async def test_a_publish_the_broker_closed_the_channel_of_goes_through_a_new_one(
    rabbit_url: str, inbox
) -> None:
    bus = RabbitBus(rabbit_url)
    await bus.start()
    try:
        received = inbox()
        await bus.consume(CREATE_QUEUE, received, prefetch=1)
        other = await aio_pika.connect(rabbit_url)
        async with other:  # the exchange deleted under Kiln: its next publish closes the channel
            await (await other.channel()).exchange_delete(COMMANDS_EXCHANGE)

        await bus.publish(COMMANDS_EXCHANGE, [COMMAND])  # declared again, bound again, confirmed

        assert (await received.next()).message_id == COMMAND.message_id
    finally:
        await bus.close()


async def test_a_nacked_message_does_not_fail_the_publishes_beside_it(
    rabbit_url: str, vhost: str, ctl: Callable[..., Awaitable[str]]
) -> None:
    # Only the delete queue is full and nacks; the creates published meanwhile are confirmed,
    # although their channel is replaced for the nacked one.
    bus = RabbitBus(rabbit_url, timeout=3.0)
    await bus.start()
    try:
        delete = OutgoingMessage(routing_key=DELETE_QUEUE, body=b"{}", message_id="del-1")
        await nacking(bus, ctl, vhost, delete)
        nacked = asyncio.create_task(bus.publish(COMMANDS_EXCHANGE, [delete]))
        creates = [
            OutgoingMessage(routing_key=CREATE_QUEUE, body=b"{}", message_id=f"c-{i}")
            for i in range(200)
        ]
        for _ in range(20):
            await bus.publish(COMMANDS_EXCHANGE, creates)
        with pytest.raises(BusUnavailable):
            await nacked
    finally:
        await bus.close()


async def test_a_message_the_client_cannot_send_is_a_bus_error_at_once(rabbit_url: str) -> None:
    bus = RabbitBus(rabbit_url)
    await bus.start()
    try:
        too_long = OutgoingMessage(routing_key=CREATE_QUEUE, body=b"{}", message_id="x" * 300)
        with pytest.raises(BusError) as raised:
            await asyncio.wait_for(bus.publish(COMMANDS_EXCHANGE, [too_long]), 2.0)
        assert not isinstance(raised.value, BusUnavailable)
    finally:
        await bus.close()
