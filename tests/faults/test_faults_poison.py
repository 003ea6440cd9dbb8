"""Poison through real processes: a command body no worker can decode goes to the dead-letter
queue at its first delivery, and a create that fails on every delivery is dead-lettered after
the delivery limit and ends in ERROR; either way the worker carries on with normal work."""

import shutil
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import aiohttp
import pytest

from bus.topology import DELIVERY_LIMIT
from support.amqp_tap import AmqpTap, EventTap
from support.image_api import ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, KilnProcess, wait_until

CREATE_QUEUE, DEAD_LETTER = "kiln.image.create", "kiln.dead-letter"
INTERNAL = 13  # google.rpc.Code
DEAD_LETTERED = "command failed repeatedly and was dead-lettered"


async def queue_depths(ctl: Callable[..., Awaitable[str]], vhost: str) -> dict[str, int]:
    listing = await ctl("list_queues", "-p", vhost, "name", "messages")
    rows = (line.split("\t") for line in listing.splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


async def ready_after(api: ImageApi, events: EventTap, source: ImageSource, name: str) -> None:
    """A normal create still ends READY."""
    image_id, operation_id = await api.create_ok(f"after-{name[:-6]}", source.url(name))
    await wait_until(lambda: image_id in events.ready_ids(), 30, "a normal create READY")
    operation = await api.operation(operation_id)
    assert operation["done"] and "error" not in operation, operation


async def start(
    deployment: Deployment, events: EventTap, rabbit_url: str
) -> tuple[KilnProcess, KilnProcess, AmqpTap]:
    gateway = await deployment.gateway()
    await events.start()
    dead = AmqpTap(rabbit_url, DEAD_LETTER, ("",))  # a copy of all that is dead-lettered
    await dead.start()
    return gateway, await deployment.worker(), dead


@pytest.mark.timeout(60)
async def test_an_undecodable_command_is_dead_lettered_and_the_worker_carries_on(
    deployment: Deployment,
    source: ImageSource,
    events: EventTap,
    http: aiohttp.ClientSession,
    image_names: list[str],
    rabbit_url: str,
    vhost: str,
    ctl: Callable[..., Awaitable[str]],
) -> None:
    gateway, worker, dead = await start(deployment, events, rabbit_url)
    try:
        poison_id, body = f"poison-{uuid.uuid4().hex[:8]}", b"\xff{not json"
        async with await aio_pika.connect(rabbit_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            commands = await channel.get_exchange("kiln.commands", ensure=True)
            message = aio_pika.Message(
                body, message_id=poison_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            await commands.publish(message, routing_key=CREATE_QUEUE)

        await wait_until(
            lambda: [t for t in dead.received if t.message_id == poison_id], 15, "dead-lettered"
        )
        (tapped,) = [t for t in dead.received if t.message_id == poison_id]
        assert tapped.body == body
        assert tapped.headers["x-first-death-queue"] == CREATE_QUEUE
        assert tapped.headers["x-first-death-reason"] == "rejected"
        # Taken from kiln.dead-letter by the worker's dead-letter consumer, logged for an
        # operator, and acknowledged (the body is in the log, not kept in the queue).
        logged = await worker.wait_logged("dead_letter.undecodable", 15, message_id=poison_id)
        assert logged["dead_letter_queue"] == CREATE_QUEUE
        # Rejected at its first delivery: no requeue loop.
        assert len(worker.logged("bus.handler_reject", message_id=poison_id)) == 1

        async def queues_empty() -> bool:
            depths = await queue_depths(ctl, vhost)
            return depths.get(CREATE_QUEUE) == 0 and depths.get(DEAD_LETTER) == 0

        await wait_until(queues_empty, 15, "command and dead-letter queues empty")

        assert worker.running
        api = ImageApi(http, gateway.url)
        await ready_after(api, events, source, image_names[0])
    finally:
        await dead.close()
    assert deployment.errors("dead_letter.undecodable") == []


@pytest.mark.timeout(60)
async def test_a_create_failing_on_every_delivery_is_dead_lettered_and_ends_in_error(
    deployment: Deployment,
    source: ImageSource,
    events: EventTap,
    http: aiohttp.ClientSession,
    image_names: list[str],
    rabbit_url: str,
) -> None:
    gateway, worker, dead = await start(deployment, events, rabbit_url)
    try:
        api = ImageApi(http, gateway.url)
        # The worker cannot write the temporary file of any import: a file where its
        # temporary directory should be.
        tmp = deployment.blob_root / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"")
        image_id, operation_id = await api.create_ok("doomed", source.url(image_names[0]))

        failed = await wait_until(
            lambda: [e for e in events.events("compute.image.failed") if e["subject"] == image_id],
            30,
            "the image FAILED",
        )
        operation = await api.operation(operation_id)
        assert operation["done"] and operation["error"]["code"] == INTERNAL, operation
        assert operation["error"]["message"] == DEAD_LETTERED
        assert (await api.image(image_id))["status"] == "ERROR"
        assert failed[0]["data"]["status"] == "ERROR"
        # Every delivery up to the limit was tried once, then the queue dead-lettered it.
        assert len(worker.logged("bus.handler_failed", queue=CREATE_QUEUE)) == DELIVERY_LIMIT + 1
        (tapped,) = [t for t in dead.received if t.headers.get("x-first-death-queue")]
        assert tapped.headers["x-first-death-reason"] == "delivery_limit"
        assert worker.logged("dead_letter.settled", operation_id=operation_id, applied=True)
        assert image_id not in events.ready_ids()

        # Repaired, the same worker goes on importing.
        tmp.unlink()
        assert worker.running
        await ready_after(api, events, source, image_names[1])
    finally:
        await dead.close()
    assert len(deployment.blob_files()) == 1  # the normal create's only
    assert deployment.temp_files() == []
    # The expected complaints: the failing deliveries and the dead-lettered operation.
    assert deployment.errors("bus.handler_failed", "dead_letter.settled") == []
