"""Imports that outlast RabbitMQ's consumer_timeout, on a node of the test's own (timeout 2 s):
the broker closes the worker's channel and delivers the unacknowledged creates again. The worker
answers the copies as leases it holds, keeps consuming on a new channel (beyond its prefetch,
which the running imports fill), and every image ends READY exactly once, imported once."""

from collections.abc import AsyncIterator

import aio_pika
import aiohttp
import pytest

from contracts.names import CREATE_QUEUE
from support.amqp_tap import EventTap
from support.image_api import ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, wait_until
from support.private_rabbit import private_rabbit

CONSUMER_TIMEOUT_MS = 2000
# The broker looks for timed-out deliveries on each channel tick: every 60 s by default.
TICKS_EVERY_500_MS = "[{rabbit, [{channel_tick_interval, 500}]}]."
SLOW_IMPORTS = 3


@pytest.fixture
async def rabbit_url() -> AsyncIterator[str]:
    """Overrides the shared broker's vhost for this module's deployment and event tap."""
    config = {"consumer_timeout": str(CONSUMER_TIMEOUT_MS)}
    async with private_rabbit(config, TICKS_EVERY_500_MS) as url:
        yield url


async def ready_creates(url: str) -> int:
    """Creates waiting in the queue for a consumer."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(CREATE_QUEUE, passive=True)
        return queue.declaration_result.message_count or 0


@pytest.mark.timeout(120)
async def test_imports_outlasting_the_consumer_timeout_end_ready_once_and_consuming_goes_on(
    deployment: Deployment,
    source: ImageSource,
    events: EventTap,
    http: aiohttp.ClientSession,
    image_names: list[str],
    rabbit_url: str,
) -> None:
    gateway = await deployment.gateway()
    await events.start()
    # No more commands than slow imports: the fast create comes on the channel that replaced
    # the closed one, on top of them, and must not wait (a waiting delivery times out too).
    worker = await deployment.worker(worker_prefetch=SLOW_IMPORTS)
    api = ImageApi(http, gateway.url)
    slow_names, fast_name = image_names[:SLOW_IMPORTS], image_names[SLOW_IMPORTS]
    slow: dict[str, str] = {}
    for name in slow_names:
        image_id, operation_id = await api.create_ok(name[:-6], source.url(name, "trickle"))
        slow[image_id] = operation_id

    def held() -> set[str]:
        return {entry["operation_id"] for entry in worker.logged("command.lease_held")}

    # Each slow create comes back once the broker times its delivery out; the worker, still
    # importing it, answers the copy without starting a second import.
    await wait_until(lambda: held() >= set(slow.values()), 30, "every slow create redelivered")
    assert source.trickling == SLOW_IMPORTS, "the imports went on through the channel's close"
    assert all(api_image["status"] == "CREATING" for api_image in await api.images())

    # The worker consumes on: a create sent now is imported while the slow ones still trickle.
    fast_id, fast_operation = await api.create_ok(fast_name[:-6], source.url(fast_name))
    await wait_until(lambda: api.all_done([fast_operation]), 30, "the fast create done")
    assert (await api.image(fast_id))["status"] == "READY"
    assert source.trickling == SLOW_IMPORTS

    source.release.set()
    await wait_until(lambda: api.all_done(list(slow.values())), 30, "the slow creates done")
    await wait_until(deployment.outbox_drained, 15, "the outbox drained")
    await events.barrier()

    for image_id, operation_id in slow.items():
        operation = await api.operation(operation_id)
        assert "error" not in operation and operation["response"]["id"] == image_id, operation
    ready = events.ready_ids()
    assert set(ready) == {*slow, fast_id}
    assert all(len(ids) == 1 for ids in ready.values()), ready
    assert all(source.started[name] == 1 for name in slow_names), source.started
    assert len(deployment.blob_files()) == SLOW_IMPORTS + 1
    assert await ready_creates(rabbit_url) == 0
    print(
        f"\n{len(held())} creates redelivered after the {CONSUMER_TIMEOUT_MS} ms consumer"
        f" timeout, answered as held leases; acknowledgements lost with the closed channel:"
        f" {len(worker.logged('bus.settle_failed'))}"
    )
    assert deployment.errors() == []
