"""`kiln worker` on SIGTERM: stop intake, let in-flight imports finish within the drain timeout,
hand back what cannot finish, exit 0; nothing is lost and nothing is imported twice."""

import time

import aiohttp
import pytest

from kiln.processes import DRAIN_SECONDS
from support.amqp_tap import EventTap
from support.image_api import ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, wait_until
from support.tcp_proxy import TcpProxy

BATCH = 16


@pytest.mark.timeout(150)
async def test_sigterm_mid_batch_drains_exits_0_and_loses_nothing(
    deployment: Deployment,
    source: ImageSource,
    events: EventTap,
    http: aiohttp.ClientSession,
    image_names: list[str],
) -> None:
    gateway = await deployment.gateway()
    await events.start()
    first = await deployment.worker()
    api = ImageApi(http, gateway.url)

    # One import outlasts any drain timeout (its source trickles until released); the others
    # take a second or two each.
    slow_name, *names = image_names[:BATCH]
    slow_image, slow_op = await api.create_ok("slow", source.url(slow_name, "trickle"))
    operations = {slow_image: slow_op}
    for name in names:
        image_id, operation_id = await api.create_ok(name[:-6], source.url(name))
        operations[image_id] = operation_id
    await wait_until(
        lambda: (
            len(events.ready_ids()) >= 2
            and source.active - source.trickling >= 3
            and source.trickling == 1
        ),
        30,
        "images READY while others and the trickling one are imported",
    )
    in_flight = first.importing()
    assert slow_op in in_flight

    first.terminate()
    signalled = time.monotonic()
    exit_code = await first.wait(DRAIN_SECONDS + 15)
    stopped_after = time.monotonic() - signalled
    print(
        f"\nSIGTERM with {len(in_flight)} imports in flight: exit {exit_code} after"
        f" {stopped_after:.1f} s (drain timeout {DRAIN_SECONDS} s)"
    )
    assert exit_code == 0, first.text()[-3000:]
    assert stopped_after < DRAIN_SECONDS + 5
    # Everything in flight but the trickling import finished during the drain...
    settled = {entry["operation_id"] for entry in first.logged("image.import_settled")}
    assert in_flight - {slow_op} <= settled
    # ...which was cancelled at the deadline, its lease given back and its partial file removed.
    assert slow_op not in settled
    assert first.logged("lease.released", operation_id=slow_op)
    stopped = first.logged("bus.consumer_stopped", queue="kiln.image.create")
    assert [entry["left"] for entry in stopped] == [1]
    assert first.logged("worker.stopped")
    assert deployment.temp_files() == []

    source.release.set()
    second = await deployment.worker()
    await wait_until(
        lambda: set(events.ready_ids()) >= set(operations), 60, "every image READY after SIGTERM"
    )
    print(f"all {len(operations)} READY {time.monotonic() - signalled:.1f} s after the SIGTERM")
    await wait_until(deployment.outbox_drained, 15, "the outbox drained")
    await events.barrier()

    ready = events.ready_ids()
    assert {image: len(ids) for image, ids in ready.items()} == dict.fromkeys(operations, 1)
    for image_id, operation_id in operations.items():
        operation = await api.operation(operation_id)
        assert operation["done"] and "error" not in operation, operation
        assert operation["response"]["id"] == image_id
    assert len(deployment.blob_files()) == len(operations)
    assert deployment.temp_files() == []
    # A graceful stop hands its work over at once: no lease to wait for, nothing to re-drive.
    assert second.logged("command.lease_held") == []
    assert second.logged("reconciler.redrive") == []
    assert deployment.errors() == []


@pytest.mark.timeout(90)
async def test_sigterm_while_the_broker_is_unreachable_still_stops_the_worker(
    deployment: Deployment, vhost: str
) -> None:
    async with TcpProxy() as proxy:
        worker = await deployment.worker(
            broker_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
        )
        await proxy.cut()
        await worker.wait_logged("bus.reconnect_failed", 15)  # every node tried, none answered

        worker.terminate()
        signalled = time.monotonic()
        try:
            exit_code: int | None = await worker.wait(DRAIN_SECONDS + 5)
        except TimeoutError:
            exit_code = None
        finally:
            if worker.running:
                worker.kill()
                await worker.wait(10)
        print(
            f"\nSIGTERM with the broker unreachable: exit {exit_code} after"
            f" {time.monotonic() - signalled:.1f} s"
        )
        assert exit_code == 0, (
            f"kiln worker did not exit within {DRAIN_SECONDS + 5} s of SIGTERM with nothing in"
            " flight and the broker unreachable"
        )
