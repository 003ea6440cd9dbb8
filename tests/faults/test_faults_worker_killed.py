"""A `kiln worker` killed with SIGKILL in the middle of a batch: RabbitMQ redelivers what it held,
the reconciler re-drives the operations whose lease it held, and every image still ends READY
exactly once, with one blob per image and no temporary file left to the sweeper's age limit."""

import collections
import os
import time
from pathlib import Path

import aiohttp
import pytest

from support.amqp_tap import EventTap
from support.image_api import FOLDER, ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, wait_until
from tests.faults.conftest import LEASE_SECONDS, PREFETCH

HOUR = 3600.0


def ready_ids(events: EventTap) -> dict[str, set[str]]:
    """Distinct READY event ids per image, from `compute.image.ready.<folder>` deliveries."""
    ids: dict[str, set[str]] = {}
    for tapped in events.messages():
        if tapped.routing_key == f"compute.image.ready.{FOLDER}":
            event = tapped.json()
            assert event["type"] == "compute.image.ready"
            ids.setdefault(event["subject"], set()).add(event["id"])
    return ids


def backdate(paths: list[Path], seconds: float) -> None:
    for path in paths:
        stamp = path.stat().st_mtime - seconds
        os.utime(path, (stamp, stamp))


@pytest.mark.timeout(120)
async def test_a_worker_killed_mid_batch_leaves_every_image_ready_exactly_once(
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

    operations: dict[str, str] = {}
    for name in image_names:
        image_id, operation_id = await api.create_ok(name.removesuffix(".qcow2"), source.url(name))
        operations[image_id] = operation_id

    # Some imports finished, others streaming: kill the worker under them.
    await wait_until(
        lambda: len(ready_ids(events)) >= PREFETCH // 2 and source.active >= 3,
        30,
        "a few images READY while imports are in flight",
    )
    streaming, ready_before = source.active, len(ready_ids(events))
    first.kill()
    in_flight = first.importing()
    assert await first.wait(10) == -9
    killed_at = time.monotonic()
    leased = await deployment.leased_by(first)

    # Temporary files of the imports the kill interrupted: nobody will finish them.
    orphans = deployment.temp_files()
    print(
        f"\nSIGKILL with {ready_before} READY, {len(in_flight)} imports in flight"
        f" ({streaming} source streams open);"
        f" {len(orphans)} temporary files left: {[p.name for p in orphans]}"
    )
    assert all(p.name.startswith("blob-") and p.suffix == ".part" for p in orphans), orphans
    assert len(orphans) <= PREFETCH  # at most one per import the worker was running
    # The sweep removes files not written for minutes (worker/reconciler.py): make these look
    # that old, so the next worker's first sweep, at its start, must remove them.
    backdate(orphans, 2 * HOUR)

    second = await deployment.worker()
    await wait_until(
        lambda: set(ready_ids(events)) >= set(operations), 60, "every image READY after the kill"
    )
    recovery = time.monotonic() - killed_at

    # Nothing still to publish, and everything published has reached the subscriber.
    await wait_until(deployment.outbox_drained, 15, "the outbox drained")
    await events.barrier()

    ready = ready_ids(events)
    assert set(ready) == set(operations)
    twice = {image: ids for image, ids in ready.items() if len(ids) != 1}
    assert twice == {}, f"images with more than one READY event id: {twice}"
    for image_id, operation_id in operations.items():
        operation = await api.operation(operation_id)
        assert operation["done"] and "error" not in operation, operation
        assert operation["response"]["id"] == image_id
    listed = await api.images()
    assert sorted(image["id"] for image in listed) == sorted(operations)
    assert {image["status"] for image in listed} == {"READY"}
    assert len(deployment.blob_files()) == len(operations)
    assert deployment.temp_files() == []
    swept = second.logged("reconciler.swept")  # logged when a sweep removed something
    assert sum(entry["temporary_files"] for entry in swept) == len(orphans), swept

    redriven = {entry["operation_id"] for entry in second.logged("reconciler.redrive")}
    held = {entry["operation_id"] for entry in second.logged("command.lease_held")}
    print(
        f"all {len(operations)} READY {recovery:.1f} s after the SIGKILL"
        f" (lease {LEASE_SECONDS} s); {len(held)} redeliveries met the dead worker's live lease,"
        f" {len(redriven)} of the {len(leased)} it had leased re-driven by the reconciler;"
        f" source streams broken by the kill: {sum(source.broken.values())}"
    )
    assert held <= redriven, "a create skipped for a live lease must be re-driven once it expires"
    assert redriven <= leased, "only what the killed worker held needs the reconciler"
    # Idempotent handling: the surviving worker imported each image once.
    opened = collections.Counter(entry["operation_id"] for entry in second.logged("source.open"))
    assert [op for op, count in opened.items() if count > 1] == []
    assert deployment.errors() == []


@pytest.mark.timeout(90)
async def test_a_dead_workers_create_redelivered_after_its_redrive_is_imported_once(
    deployment: Deployment,
    source: ImageSource,
    events: EventTap,
    http: aiohttp.ClientSession,
    image_names: list[str],
) -> None:
    """The killed worker's unacked create goes back to the queue while the survivor is busy;
    the survivor's reconciler re-drives it once the lease runs out. The survivor then receives
    both copies of the command: it must import the image once, not twice at the same time."""
    gateway = await deployment.gateway()
    await events.start()
    api = ImageApi(http, gateway.url)
    survivor = await deployment.worker(worker_prefetch=2)
    busy = {}
    for name in image_names[:2]:  # keep the survivor's two slots taken until released
        image_id, operation_id = await api.create_ok(name[:-6], source.url(name, "trickle"))
        busy[image_id] = operation_id
    await wait_until(lambda: source.trickling == 2, 15, "the survivor busy with two imports")

    doomed = await deployment.worker(worker_prefetch=1)
    name = image_names[2]
    image_id, operation_id = await api.create_ok(name[:-6], source.url(name))
    await wait_until(lambda: operation_id in doomed.importing(), 15, "the create in flight")
    doomed.kill()
    await doomed.wait(10)

    # The command is back in the queue (nobody has a free slot), the lease runs out, and the
    # survivor's reconciler publishes the command again.
    await survivor.wait_logged("reconciler.redrive", 30, operation_id=operation_id)
    source.release.set()
    everything = {**busy, image_id: operation_id}
    await wait_until(lambda: set(events.ready_ids()) >= set(everything), 30, "every image READY")
    await wait_until(deployment.outbox_drained, 15, "the outbox drained")
    await events.barrier()

    assert {image: len(ids) for image, ids in events.ready_ids().items()} == dict.fromkeys(
        everything, 1
    )
    opened = survivor.logged("source.open", operation_id=operation_id)
    starts = [e for e in events.events("compute.image.import_started") if e["subject"] == image_id]
    print(
        f"\nthe survivor fetched the dead worker's image {len(opened)} time(s);"
        f" import_started events: {len(starts)}; source hits: {source.started[name]}"
    )
    assert len(opened) == 1, "the survivor imported the same image twice"
