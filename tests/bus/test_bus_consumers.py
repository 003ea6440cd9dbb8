"""Event subscriptions, prefetch and competing consumers, on every transport."""

import asyncio

from bus import Bus, Delivery, Handler, OutgoingMessage, Retry
from bus.outbox_publisher import outgoing
from bus.topology import COMMANDS_EXCHANGE, CREATE_QUEUE, EVENTS_EXCHANGE
from contracts.names import CANCELS_EXCHANGE
from contracts.notices import cancel_notice

WAIT = 2.0


def event(routing_key: str) -> OutgoingMessage:
    return OutgoingMessage(
        routing_key=routing_key,
        body=b"{}",
        message_id=routing_key,
        content_type="application/cloudevents+json",
    )


def commands(count: int) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(routing_key=CREATE_QUEUE, body=b"{}", message_id=f"cmd-{i}")
        for i in range(count)
    ]


async def test_topic_bindings_select_events(bus: Bus, inbox) -> None:
    folder1, everything = inbox(), inbox()
    await bus.subscribe(EVENTS_EXCHANGE, ["compute.image.*.folder1"], folder1, prefetch=1)
    await bus.subscribe(EVENTS_EXCHANGE, ["#"], everything, prefetch=1)
    keys = [
        "compute.image.created.folder1",
        "compute.image.created.folder2",
        "compute.operation.done.folder1",
        "compute.image.created.folder1.extra",
        "compute.image.deleted.folder1",
    ]

    await bus.publish(EVENTS_EXCHANGE, [event(key) for key in keys])

    assert [d.routing_key for d in await everything.take(len(keys))] == keys
    assert [d.routing_key for d in await folder1.take(2)] == [
        "compute.image.created.folder1",
        "compute.image.deleted.folder1",
    ]
    await folder1.assert_quiet()
    await everything.assert_quiet()


async def test_several_binding_keys_deliver_a_message_once(bus: Bus, inbox) -> None:
    received = inbox()
    keys = ["compute.image.#", "#.folder1", "compute.image.created.folder1"]
    await bus.subscribe(EVENTS_EXCHANGE, keys, received, prefetch=1)

    await bus.publish(EVENTS_EXCHANGE, [event("compute.image.created.folder1")])

    assert (await received.next()).content_type == "application/cloudevents+json"
    await received.assert_quiet()


async def test_cancel_notices_reach_every_subscriber_and_only_those_listening(
    bus: Bus, inbox
) -> None:
    unheard, heard = outgoing(cancel_notice("opr-1", "")), outgoing(cancel_notice("opr-2", ""))
    await bus.publish(CANCELS_EXCHANGE, [unheard])  # nobody listens: dropped, yet confirmed
    first, second = inbox(), inbox()
    await bus.subscribe(CANCELS_EXCHANGE, [""], first)
    await bus.subscribe(CANCELS_EXCHANGE, [""], second)

    await bus.publish(CANCELS_EXCHANGE, [heard])

    assert (await first.next()).message_id == heard.message_id
    assert (await second.next()).message_id == heard.message_id
    await first.assert_quiet()
    await second.assert_quiet()


async def test_stopped_subscription_receives_nothing(bus: Bus, inbox) -> None:
    received = inbox()
    subscription = await bus.subscribe(EVENTS_EXCHANGE, ["#"], received, prefetch=1)

    await subscription.stop()
    await bus.publish(EVENTS_EXCHANGE, [event("compute.image.created.folder1")])

    await received.assert_quiet()


async def test_prefetch_bounds_concurrent_handlers(bus: Bus, inbox) -> None:
    release = asyncio.Event()
    started = inbox()
    running, peak = 0, 0

    async def slow(delivery: Delivery) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await started(delivery)
        await release.wait()
        running -= 1

    await bus.consume(CREATE_QUEUE, slow, prefetch=2)
    await bus.publish(COMMANDS_EXCHANGE, commands(5))

    await started.take(2)
    await started.assert_quiet()
    release.set()
    await started.take(3)
    assert peak == 2


async def test_competing_consumers_share_a_queue(bus: Bus, inbox) -> None:
    release = asyncio.Event()
    first, second = inbox(), inbox()

    def blocking(record: Handler) -> Handler:
        async def handle(delivery: Delivery) -> None:
            await record(delivery)
            await release.wait()

        return handle

    await bus.consume(CREATE_QUEUE, blocking(first), prefetch=1)
    await bus.consume(CREATE_QUEUE, blocking(second), prefetch=1)
    await bus.publish(COMMANDS_EXCHANGE, commands(2))

    await asyncio.gather(first.next(), second.next())
    release.set()


async def test_subscriber_redeliveries_are_flagged_but_not_counted_past_two(
    bus: Bus, inbox
) -> None:
    seen = inbox()

    async def retry_twice(delivery: Delivery) -> None:
        await seen(delivery)
        if len(seen.deliveries) < 3:
            raise Retry("later")

    await bus.subscribe(EVENTS_EXCHANGE, ["#"], retry_twice, prefetch=1)
    await bus.publish(EVENTS_EXCHANGE, [event("compute.image.created.folder1")])

    deliveries = await seen.take(3)
    assert [(d.redelivered, d.delivery_count) for d in deliveries] == [
        (False, 1),
        (True, 2),
        (True, 2),
    ]
