"""Any one node dies with a batch of creates in flight: a node of a three-node RabbitMQ cluster
(the one Kiln is connected to, or another that leads the queues), or the PostgreSQL primary,
whose synchronous standby is then promoted. Every acknowledged create ends READY, none ERROR,
none missing, none stuck; the gateway answers 200 or 503, never 500."""

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
import aiohttp
import pytest
from structlog.testing import capture_logs

from bus import OutgoingMessage, RabbitBus
from contracts.names import COMMANDS_EXCHANGE, CREATE_QUEUE, DELETE_QUEUE
from support.image_api import ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, wait_until
from support.postgres_standby import postgres_pair
from support.rabbit_cluster import RabbitCluster, rabbit_cluster

BEFORE = 10  # creates accepted before the fault, their imports streaming when it strikes
AFTER = 6  # creates made once it struck, retried while the gateway answers 503
SETTLE_SECONDS = 90.0
PROMOTION_SECONDS = 3.0
COMMAND = OutgoingMessage(routing_key=CREATE_QUEUE, body=b"{}", message_id="cmd-any-node")


class Batch:
    """The creates of one test: what was acknowledged, and how the gateway answered."""

    def __init__(self, api: ImageApi, source: ImageSource, names: list[str]) -> None:
        self.api = api
        self.source = source
        self.names = iter(names)
        self.accepted: dict[str, str] = {}  # image id → operation id
        self.statuses: collections.Counter[int] = collections.Counter()

    async def create(self) -> None:
        """One create, sent again while the gateway answers 503 (UNAVAILABLE)."""
        name = next(self.names)
        while True:
            status, body = await self.api.create(name[:-6], self.source.url(name))
            self.statuses[status] += 1
            if status == 200:
                self.accepted[body["metadata"]["imageId"]] = body["id"]
                return
            assert status == 503, (status, body)
            await asyncio.sleep(0.2)  # a client's pause before it tries again

    async def outcome(self, struck_at: float) -> tuple[collections.Counter[str], str]:
        """Wait until every operation is done; how they ended and a one-line summary."""
        await wait_until(
            lambda: self.api.all_done(list(self.accepted.values())),
            SETTLE_SECONDS,
            f"all {len(self.accepted)} acknowledged creates done",
        )
        recovery = time.monotonic() - struck_at
        results: collections.Counter[str] = collections.Counter()
        for image_id, operation_id in self.accepted.items():
            operation = await self.api.operation(operation_id)
            image = await self.api.image(image_id)
            results["ERROR" if "error" in operation else image["status"]] += 1
        listed = {image["id"] for image in await self.api.images()}
        results["missing"] = len(set(self.accepted) - listed)
        summary = (
            f"{len(self.accepted)} acknowledged: {dict(results)}; gateway answers"
            f" {dict(self.statuses)}; all done {recovery:.1f} s after the fault"
        )
        return results, summary


async def run_batch(
    deployment: Deployment,
    http: aiohttp.ClientSession,
    source: ImageSource,
    image_names: list[str],
    fault: Callable[[], Awaitable[None]],
) -> None:
    gateway = await deployment.gateway()
    await deployment.worker()
    await deployment.worker()
    batch = Batch(ImageApi(http, gateway.url), source, image_names)
    for _ in range(BEFORE):
        await batch.create()
    await wait_until(lambda: source.active >= 3, 15, "imports streaming")

    await fault()
    struck_at = time.monotonic()
    for _ in range(AFTER):
        await batch.create()
    results, summary = await batch.outcome(struck_at)
    unconfirmed = sum(len(p.logged("bus.publish_unconfirmed")) for p in deployment.processes)
    print(f"\n{summary}; publishes sent again after a nack or a lost confirm: {unconfirmed}")

    assert results == {"READY": BEFORE + AFTER, "missing": 0}, summary
    assert set(batch.statuses) <= {200, 503}, summary
    assert deployment.errors() == [], summary


async def declare_through(url: str) -> None:
    """Declare Kiln's topology through one node: a quorum queue's leader is where it was
    declared."""
    declaring = RabbitBus(url)
    await declaring.start()
    await declaring.close()


@pytest.fixture
async def cluster() -> AsyncIterator[RabbitCluster]:
    async with rabbit_cluster(3) as nodes:
        yield nodes


@pytest.mark.timeout(240)
async def test_the_broker_node_in_use_dies(
    tmp_path: Path,
    cluster: RabbitCluster,
    postgres_url: str,
    source: ImageSource,
    http: aiohttp.ClientSession,
    image_names: list[str],
) -> None:
    # Every process connects to the first node of the URL, the one killed. The queues are
    # asked for more replicas than the cluster has nodes: RabbitMQ gives them every node.
    deployment = Deployment(
        tmp_path,
        database_url=postgres_url,
        broker_url=cluster.multi_host_url(),
        broker_quorum_size=5,
    )
    try:
        await run_batch(deployment, http, source, image_names, lambda: cluster.kill(0))
        replicas = [len(await cluster.queue_members(q)) for q in (CREATE_QUEUE, DELETE_QUEUE)]
    finally:
        unclean = await deployment.close()
    assert unclean == []
    assert replicas == [3, 3]
    killed = f"127.0.0.1:{cluster.ports[0]}"
    for process in deployment.processes:
        nodes = [entry["node"] for entry in process.logged("bus.connected")]
        assert nodes[0] == killed and nodes[-1] != killed, (process.role, nodes)


@pytest.mark.timeout(240)
async def test_a_broker_node_kiln_does_not_use_dies_leading_the_queues(
    tmp_path: Path,
    cluster: RabbitCluster,
    postgres_url: str,
    source: ImageSource,
    http: aiohttp.ClientSession,
    image_names: list[str],
) -> None:
    # Declared through the first node, the queues have their leaders there; Kiln uses the others.
    await declare_through(cluster.urls[0])
    assert await cluster.queue_leader(CREATE_QUEUE) == cluster.node_names[0]
    others = ",".join(f"127.0.0.1:{port}" for port in cluster.ports[1:])
    deployment = Deployment(
        tmp_path, database_url=postgres_url, broker_url=f"amqp://guest:guest@{others}/"
    )
    try:
        await run_batch(deployment, http, source, image_names, lambda: cluster.kill(0))
    finally:
        unclean = await deployment.close()
    assert unclean == []


@pytest.mark.timeout(120)
async def test_a_channel_the_dead_leader_left_nacking_is_reopened(cluster: RabbitCluster) -> None:
    # RabbitMQ 3.10: a channel whose first publish to a quorum queue comes just after the
    # node of the queue's leader died is nacked, and every publish on it after that. A plain
    # aio-pika channel shows the fault; Kiln's publish beside it goes through a fresh channel.
    await declare_through(cluster.urls[0])  # the queues' leaders on the node killed
    plain = await aio_pika.connect(cluster.urls[1])
    bus = RabbitBus(cluster.urls[1])
    try:
        exchange = await (await plain.channel()).get_exchange(COMMANDS_EXCHANGE)
        await bus.start()
        await cluster.kill(0)

        struck_at = time.monotonic()
        with capture_logs() as logs:
            kiln_publish = asyncio.create_task(bus.publish(COMMANDS_EXCHANGE, [COMMAND]))
            plain_first = await _nacked(exchange)
            await kiln_publish
        confirmed_in = time.monotonic() - struck_at
        plain_after = [await _nacked(exchange) for _ in range(5)]
    finally:
        await bus.close()
        await plain.close()
    reopened = sum(entry["event"] == "bus.publishing_channel_reopened" for entry in logs)
    summary = (
        f"Kiln's publish confirmed {confirmed_in:.2f} s after the kill, its channel reopened"
        f" {reopened} times; the plain channel nacked first {plain_first}, after {plain_after}"
    )
    print(f"\n{summary}")
    assert plain_first and all(plain_after), summary  # the fault was there, and it stayed
    assert reopened >= 1, summary


async def _nacked(exchange: aio_pika.abc.AbstractExchange) -> bool:
    try:
        await exchange.publish(aio_pika.Message(b"{}"), CREATE_QUEUE)
    except aio_pika.exceptions.DeliveryError:
        return True
    return False


@pytest.mark.timeout(240)
async def test_the_postgres_primary_dies_and_its_synchronous_standby_is_promoted(
    tmp_path: Path,
    rabbit_url: str,
    source: ImageSource,
    http: aiohttp.ClientSession,
    image_names: list[str],
) -> None:
    async with postgres_pair(max_connections=80) as pair:
        await pair.create_database("kiln")
        assert await pair.is_synchronous()
        deployment = Deployment(
            tmp_path, database_url=pair.multi_host_url("kiln"), broker_url=rabbit_url
        )

        async def promote_later() -> None:
            await asyncio.sleep(PROMOTION_SECONDS)  # how long a failover manager takes to act
            await pair.promote()

        async def fail_over() -> None:
            await pair.kill_primary()
            promotions.append(asyncio.create_task(promote_later()))

        promotions: list[asyncio.Task[None]] = []
        try:
            await run_batch(deployment, http, source, image_names, fail_over)
        finally:
            await asyncio.gather(*promotions)
            unclean = await deployment.close()
    assert unclean == []
