"""Publishing and routing, on every transport."""

import asyncio
import uuid

import pytest

from bus import Bus, BusError, BusUnavailable, OutgoingMessage
from bus.topology import COMMANDS_EXCHANGE, CREATE_QUEUE, DELETE_QUEUE, EVENTS_EXCHANGE


def command(routing_key: str = CREATE_QUEUE) -> OutgoingMessage:
    return OutgoingMessage(
        routing_key=routing_key,
        body=b'{"imageId": "fd8abc"}',
        message_id=f"cmd{uuid.uuid4().hex}",
    )


async def test_command_waits_in_queue_and_keeps_its_properties(bus: Bus, inbox) -> None:
    sent = OutgoingMessage(
        routing_key=CREATE_QUEUE,
        body=b'{"imageId": "fd8abc"}',
        message_id="cmd-1",
        correlation_id="req-1",
        content_type="application/x-kiln",
        type="kiln.image.create",
        headers={"traceparent": "00-abc-def-01", "tenant": "folder1"},
    )
    await bus.publish(COMMANDS_EXCHANGE, [sent])
    received = inbox()
    await bus.consume(CREATE_QUEUE, received, prefetch=1)

    delivery = await received.next()

    assert delivery.routing_key == sent.routing_key
    assert delivery.body == sent.body
    assert delivery.message_id == sent.message_id
    assert delivery.correlation_id == "req-1"
    assert delivery.content_type == "application/x-kiln"
    assert delivery.type == "kiln.image.create"
    assert delivery.headers == sent.headers
    assert (delivery.redelivered, delivery.delivery_count) == (False, 1)


async def test_optional_properties_stay_unset(bus: Bus, inbox) -> None:
    received = inbox()
    await bus.consume(CREATE_QUEUE, received, prefetch=1)
    await bus.publish(COMMANDS_EXCHANGE, [command()])

    delivery = await received.next()

    assert (delivery.correlation_id, delivery.type, delivery.headers) == (None, None, {})
    assert delivery.content_type == "application/json"


async def test_direct_exchange_routes_by_queue_name(bus: Bus, inbox) -> None:
    creates, deletes = inbox(), inbox()
    await bus.consume(CREATE_QUEUE, creates, prefetch=10)
    await bus.consume(DELETE_QUEUE, deletes, prefetch=10)

    await bus.publish(COMMANDS_EXCHANGE, [command(DELETE_QUEUE), command("kiln.image.unknown")])

    assert (await deletes.next()).routing_key == DELETE_QUEUE
    await creates.assert_quiet()
    await deletes.assert_quiet()


async def test_two_hundred_messages_confirmed_in_one_call(bus: Bus, inbox) -> None:
    sent = [command() for _ in range(200)]

    await bus.publish(COMMANDS_EXCHANGE, sent)

    received = inbox()
    await bus.consume(CREATE_QUEUE, received, prefetch=50)
    deliveries = await received.take(200)
    assert {d.message_id for d in deliveries} == {m.message_id for m in sent}


async def test_publishing_nothing_is_a_no_op(bus: Bus) -> None:
    await bus.publish(COMMANDS_EXCHANGE, [])


async def test_unroutable_event_is_dropped(bus: Bus, inbox) -> None:
    event = OutgoingMessage(routing_key="compute.image.created.f1", body=b"{}", message_id="e1")
    await bus.publish(EVENTS_EXCHANGE, [event])
    received = inbox()
    await bus.subscribe(EVENTS_EXCHANGE, ["#"], received, prefetch=1)

    await bus.publish(EVENTS_EXCHANGE, [event])

    assert (await received.next()).message_id == "e1"
    await received.assert_quiet()


async def test_unknown_exchange_or_queue_is_a_bus_error(bus: Bus, inbox) -> None:
    with pytest.raises(BusError) as raised:
        await bus.publish("kiln.nowhere", [command()])
    assert not isinstance(raised.value, BusUnavailable)
    with pytest.raises(BusError):
        await bus.consume("kiln.nowhere", inbox(), prefetch=1)
    with pytest.raises(ValueError, match="prefetch"):
        await bus.consume(CREATE_QUEUE, inbox(), prefetch=0)


async def test_handlers_get_private_copies(bus: Bus, inbox) -> None:
    mutated = asyncio.Event()

    async def vandal(delivery) -> None:
        delivery.headers["tenant"] = "mallory"
        mutated.set()

    observer = inbox()
    await bus.subscribe(EVENTS_EXCHANGE, ["#"], vandal, prefetch=1)
    await bus.subscribe(EVENTS_EXCHANGE, ["#"], observer, prefetch=1)
    headers = {"tenant": "alice"}
    event = OutgoingMessage(routing_key="a.b", body=b"{}", message_id="e1", headers=headers)

    await bus.publish(EVENTS_EXCHANGE, [event])
    headers["tenant"] = "eve"
    await asyncio.wait_for(mutated.wait(), 2)

    assert (await observer.next()).headers == {"tenant": "alice"}


async def test_closed_bus_is_unavailable(bus: Bus, inbox) -> None:
    assert bus.connected
    await bus.close()

    assert not bus.connected
    with pytest.raises(BusUnavailable):
        await bus.publish(COMMANDS_EXCHANGE, [command()])
    with pytest.raises(BusUnavailable):
        await bus.consume(CREATE_QUEUE, inbox(), prefetch=1)
