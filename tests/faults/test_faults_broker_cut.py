"""The broker connection cut for a few seconds (a TCP proxy between Kiln and RabbitMQ): the
gateway queues creates in its outbox or answers 503, never 500, reads keep working, and once
the network is back every image completes, READY exactly once."""

import asyncio
import collections
import time
import uuid

import aiohttp
import pytest

from support.amqp_tap import EventTap
from support.image_api import FOLDER, ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, wait_until
from support.tcp_proxy import TcpProxy

CUT_SECONDS = 4.0
CREATES_DURING_CUT = 10
UNAVAILABLE = 14  # google.rpc.Code


async def reads_answer(api: ImageApi, image_id: str) -> None:
    status, body = await api.call("GET", f"/compute/v1/images/{image_id}")
    assert status == 200, (status, body)
    status, body = await api.call("GET", "/compute/v1/images", params={"folderId": FOLDER})
    assert status == 200, (status, body)


@pytest.mark.timeout(120)
async def test_a_broker_cut_queues_or_refuses_creates_and_everything_completes_after(
    deployment: Deployment,
    source: ImageSource,
    events: EventTap,
    http: aiohttp.ClientSession,
    image_names: list[str],
    vhost: str,
) -> None:
    proxy = TcpProxy(target_port=5672)
    await proxy.start()
    try:
        through_proxy = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
        gateway = await deployment.gateway(broker_url=through_proxy)
        await events.start()  # straight to the broker: it sees what is published after the cut
        worker = await deployment.worker(broker_url=through_proxy)
        api = ImageApi(http, gateway.url)
        names = iter(image_names)
        operations: dict[str, str] = {}
        for _ in range(3):  # in flight when the network goes
            name = next(names)
            image_id, operation_id = await api.create_ok(name[:-6], source.url(name))
            operations[image_id] = operation_id
        await wait_until(lambda: source.active >= 3, 15, "imports streaming before the cut")

        await proxy.cut()
        cut_at = time.monotonic()
        statuses: collections.Counter[int] = collections.Counter()
        slowest = 0.0
        for index in range(CREATES_DURING_CUT):
            name = next(names)
            started = time.monotonic()
            status, body = await api.create(name[:-6], source.url(name))
            slowest = max(slowest, time.monotonic() - started)
            statuses[status] += 1
            if status == 200:
                operations[body["metadata"]["imageId"]] = body["id"]
            else:
                assert status == 503, (status, body)
                assert body["code"] == UNAVAILABLE and body["message"], body
                assert body["details"][0]["requestId"], body
            await reads_answer(api, next(iter(operations)))
            # Pacing the creates over the cut (not synchronisation): the fault lasts this long.
            await asyncio.sleep(
                max(0.0, cut_at + (index + 1) * CUT_SECONDS / CREATES_DURING_CUT - time.monotonic())
            )
        assert proxy.is_cut
        assert gateway.running and worker.running
        print(
            f"\nduring a {time.monotonic() - cut_at:.1f} s cut: create statuses {dict(statuses)},"
            f" slowest create {slowest:.2f} s"
        )

        await proxy.restore()
        restored_at = time.monotonic()
        await wait_until(
            lambda: set(events.ready_ids()) >= set(operations), 60, "every image READY after"
        )
        recovery = time.monotonic() - restored_at

        # The gateway publishes by itself again (no deferral to the relay for a new create).
        request_id = f"after-cut-{uuid.uuid4().hex[:8]}"
        name = next(names)
        status, body = await api.call(
            "POST",
            "/compute/v1/images",
            json={"folderId": FOLDER, "name": name[:-6], "uri": source.url(name)},
            headers={"X-Request-Id": request_id},
        )
        assert status == 200, body
        operations[body["metadata"]["imageId"]] = body["id"]
        await wait_until(lambda: set(events.ready_ids()) >= set(operations), 30, "the last READY")
        assert not gateway.logged("outbox publish deferred to the relay", request_id=request_id)

        await wait_until(deployment.outbox_drained, 15, "the outbox drained")
        await events.barrier()

        ready = events.ready_ids()
        assert {image: len(ids) for image, ids in ready.items()} == dict.fromkeys(operations, 1)
        for image_id, operation_id in operations.items():
            operation = await api.operation(operation_id)
            assert operation["done"] and "error" not in operation, operation
            assert (await api.image(image_id))["status"] == "READY"
    finally:
        # Stopped while the broker is reachable (test_faults_sigterm stops one while it is not).
        await proxy.restore()
        unclean = await deployment.close()
        await proxy.close()
    assert unclean == []

    assert len(deployment.blob_files()) == len(operations)
    assert deployment.temp_files() == []
    assert deployment.errors() == []
    deferred = gateway.logged("outbox publish deferred to the relay")
    refetched = sorted(name for name, count in source.started.items() if count > 1)
    print(
        f"all {len(operations)} READY {recovery:.1f} s after restore; gateway deferred"
        f" {len(deferred)} publishes to the relay; imports started again after the cut:"
        f" {refetched}; worker lease releases: {len(worker.logged('lease.released'))}"
    )
