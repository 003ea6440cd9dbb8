"""A worker whose clock runs five minutes fast or slow (libfaketime, in that process only),
beside a worker and a gateway on true time: leases, their expiry and outbox ages are all read
on the database's clock, so nothing healthy is re-driven, no source is imported twice and every
image is announced READY once."""

import os

import aiohttp
import pytest

from support.amqp_tap import EventTap
from support.image_api import ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, wait_until

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
CREATES = 12


def skewed(offset: str) -> dict[str, str]:
    """The environment that shifts a process's wall clock by `offset` (monotonic time stays)."""
    assert os.path.exists(LIBFAKETIME), "libfaketime missing: apt-get install faketime"
    return {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("offset", ["+300", "-300"])
async def test_a_skewed_worker_redrives_nothing_and_imports_once(
    deployment: Deployment,
    source: ImageSource,
    events: EventTap,
    http: aiohttp.ClientSession,
    image_names: list[str],
    offset: str,
) -> None:
    gateway = await deployment.gateway()
    await events.start()
    on_time = await deployment.worker()
    off_time = await deployment.worker(environ=skewed(offset))
    api = ImageApi(http, gateway.url)
    accepted = dict([await api.create_ok(n[:-6], source.url(n)) for n in image_names[:CREATES]])

    await wait_until(lambda: set(events.ready_ids()) >= set(accepted), 60, "every image READY")
    await wait_until(deployment.outbox_drained, 15, "the outbox drained")
    await events.barrier()

    redrives = on_time.logged("reconciler.redrive") + off_time.logged("reconciler.redrive")
    twice = {name: count for name, count in source.started.items() if count > 1}
    announced = {image: len(ids) for image, ids in events.ready_ids().items()}
    summary = (
        f"worker at {offset} s: {len(redrives)} redrives, sources fetched twice: {twice},"
        f" READY events per image: {sorted(set(announced.values()))},"
        f" imports by the skewed worker: {len(off_time.logged('image.imported'))}"
    )
    print("\n" + summary)
    assert redrives == [] and twice == {}, summary
    assert announced == dict.fromkeys(accepted, 1), summary
    assert off_time.logged("image.imported"), "the skewed worker took no part: " + summary
