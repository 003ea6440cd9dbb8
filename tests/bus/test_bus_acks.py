"""Acks, redelivery and dead-lettering, on every transport."""

import asyncio

import msgspec
import structlog
import structlog.contextvars
import structlog.testing

from bus import Bus, Delivery, OutgoingMessage, Reject, Retry
from bus.topology import (
    COMMANDS_EXCHANGE,
    CREATE_QUEUE,
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
)

WAIT = 2.0


def create_command(message_id: str = "cmd-1") -> OutgoingMessage:
    return OutgoingMessage(
        routing_key=CREATE_QUEUE,
        body=b'{"imageId": "fd8abc"}',
        message_id=message_id,
        headers={"x-request-id": "req-1"},
    )


async def test_message_is_not_redelivered_while_its_handler_runs(bus: Bus, inbox) -> None:
    release = asyncio.Event()
    started = inbox()

    async def slow(delivery: Delivery) -> None:
        await started(delivery)
        await release.wait()

    await bus.consume(CREATE_QUEUE, slow, prefetch=5)
    await bus.consume(CREATE_QUEUE, slow, prefetch=5)
    await bus.publish(COMMANDS_EXCHANGE, [create_command()])

    await started.next()
    await started.assert_quiet()
    release.set()
    await started.assert_quiet()


async def test_retry_redelivers_with_a_higher_count(bus: Bus, inbox) -> None:
    seen = inbox()

    async def retry_once(delivery: Delivery) -> None:
        await seen(delivery)
        if delivery.delivery_count == 1:
            raise Retry("not yet")

    await bus.consume(CREATE_QUEUE, retry_once, prefetch=1)
    await bus.publish(COMMANDS_EXCHANGE, [create_command()])

    first, second = await seen.take(2)
    assert (first.redelivered, first.delivery_count) == (False, 1)
    assert (second.redelivered, second.delivery_count) == (True, 2)
    assert second.message_id == first.message_id
    await seen.assert_quiet()


async def test_failing_handler_ends_in_dead_letter_queue(bus: Bus, inbox) -> None:
    attempts, dead = inbox(), inbox()

    async def broken(delivery: Delivery) -> None:
        await attempts(delivery)
        raise RuntimeError("bug")

    await bus.consume(CREATE_QUEUE, broken, prefetch=1)
    await bus.consume(DEAD_LETTER_QUEUE, dead, prefetch=1)
    await bus.publish(COMMANDS_EXCHANGE, [create_command()])

    tries = await attempts.take(DELIVERY_LIMIT + 1)
    assert [d.delivery_count for d in tries] == list(range(1, DELIVERY_LIMIT + 2))
    corpse = await dead.next()
    assert (corpse.body, corpse.message_id) == (tries[0].body, "cmd-1")
    assert corpse.routing_key == CREATE_QUEUE
    assert corpse.headers["x-request-id"] == "req-1"
    assert corpse.headers["x-first-death-queue"] == CREATE_QUEUE
    assert corpse.headers["x-first-death-reason"] == "delivery_limit"
    assert corpse.delivery_count == 1
    await attempts.assert_quiet()


async def test_reject_dead_letters_at_once(bus: Bus, inbox) -> None:
    attempts, dead = inbox(), inbox()

    async def refuse(delivery: Delivery) -> None:
        await attempts(delivery)
        raise Reject("malformed")

    await bus.consume(CREATE_QUEUE, refuse, prefetch=1)
    await bus.consume(DEAD_LETTER_QUEUE, dead, prefetch=1)
    await bus.publish(COMMANDS_EXCHANGE, [create_command()])

    corpse = await dead.next()
    assert corpse.message_id == "cmd-1"
    assert corpse.headers["x-first-death-queue"] == CREATE_QUEUE
    assert corpse.headers["x-first-death-exchange"] == COMMANDS_EXCHANGE
    assert corpse.headers["x-first-death-reason"] == "rejected"
    assert len(attempts.deliveries) == 1


async def test_stop_waits_for_the_handler_then_takes_nothing(bus: Bus, inbox) -> None:
    release = asyncio.Event()
    started = inbox()

    async def slow(delivery: Delivery) -> None:
        await started(delivery)
        await release.wait()

    subscription = await bus.consume(CREATE_QUEUE, slow, prefetch=5)
    await bus.publish(COMMANDS_EXCHANGE, [create_command("cmd-1")])
    await started.next()

    stopping = asyncio.create_task(subscription.stop(timeout=WAIT))
    await bus.publish(COMMANDS_EXCHANGE, [create_command("cmd-2")])
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, WAIT)

    later = inbox()
    await bus.consume(CREATE_QUEUE, later, prefetch=5)
    assert (await later.next()).message_id == "cmd-2"
    await later.assert_quiet()
    await started.assert_quiet()


async def test_stop_timeout_gives_the_message_back(bus: Bus, inbox) -> None:
    started = inbox()

    async def stuck(delivery: Delivery) -> None:
        await started(delivery)
        await asyncio.Event().wait()

    subscription = await bus.consume(CREATE_QUEUE, stuck, prefetch=1)
    await bus.publish(COMMANDS_EXCHANGE, [create_command()])
    await started.next()

    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(subscription.stop(timeout=0.1), WAIT)

    assert {"event": "bus.consumer_stopped", "left": 1} in [
        {"event": log["event"], "left": log.get("left")} for log in logs
    ]

    later = inbox()
    await bus.consume(CREATE_QUEUE, later, prefetch=1)
    again = await later.next()
    assert (again.message_id, again.redelivered, again.delivery_count) == ("cmd-1", True, 2)


async def test_handler_logs_carry_the_message_ids(bus: Bus, inbox) -> None:
    handled = inbox()
    contexts: list[dict[str, object]] = []

    async def handler(delivery: Delivery) -> None:
        contexts.append(structlog.contextvars.get_contextvars())
        await handled(delivery)

    await bus.consume(CREATE_QUEUE, handler, prefetch=1)
    command = msgspec.structs.replace(create_command(), correlation_id="req-7")
    await bus.publish(COMMANDS_EXCHANGE, [command])
    await handled.next()

    assert contexts[0]["correlation_id"] == "req-7"
    assert contexts[0]["message_id"] == "cmd-1"
    assert contexts[0]["queue"] == CREATE_QUEUE
