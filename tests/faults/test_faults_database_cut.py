"""PostgreSQL out of reach for 20 s in the middle of a batch (a TCP proxy between Kiln and the
database, cut: every connection dropped, new ones refused): the gateway answers 503 meanwhile,
the worker holds its commands instead of spending their deliveries, and once the database is
back every accepted create ends READY, none in ERROR."""

import collections
import time

import aiohttp
import pytest

from support.amqp_tap import EventTap
from support.image_api import ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, wait_until
from support.tcp_proxy import TcpProxy

CUT_SECONDS = 20.0
IN_FLIGHT = 12  # created before the cut: streaming, waiting for a fetch slot, or done
DURING_CUT = 6
UNAVAILABLE = 14  # google.rpc.Code


def through(proxy: TcpProxy, database_url: str) -> str:
    return database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


@pytest.mark.timeout(150)
async def test_a_database_outage_costs_time_not_images(
    deployment: Deployment,
    source: ImageSource,
    events: EventTap,
    http: aiohttp.ClientSession,
    image_names: list[str],
    postgres_url: str,
) -> None:
    proxy = TcpProxy(target_port=5432)
    await proxy.start()
    try:
        # Leases as long as the default: an outage shorter than them re-drives nothing.
        url = through(proxy, postgres_url)
        gateway = await deployment.gateway(database_url=url)
        await events.start()
        await deployment.worker(database_url=url, worker_lease_seconds=30)
        api = ImageApi(http, gateway.url)
        names = iter(image_names)
        accepted: dict[str, str] = {}
        for _ in range(IN_FLIGHT):
            name = next(names)
            image_id, operation_id = await api.create_ok(name[:-6], source.url(name))
            accepted[image_id] = operation_id
        await wait_until(lambda: source.active >= 3, 15, "imports streaming before the cut")

        await proxy.cut()
        cut_at = time.monotonic()
        statuses: collections.Counter[int] = collections.Counter()
        for _ in range(DURING_CUT):
            name = next(names)
            status, body = await api.create(name[:-6], source.url(name))
            statuses[status] += 1
            assert status == 503 and body["code"] == UNAVAILABLE, (status, body)
        await wait_until(lambda: time.monotonic() - cut_at >= CUT_SECONDS, CUT_SECONDS + 5)
        await proxy.restore()
        restored_at = time.monotonic()

        await wait_until(
            lambda: set(events.ready_ids()) >= set(accepted), 60, "every accepted image READY"
        )
        recovery = time.monotonic() - restored_at
        results = collections.Counter()
        for image_id, operation_id in accepted.items():
            operation = await api.operation(operation_id)
            results["error" if "error" in operation else "ok" if operation["done"] else "open"] += 1
            assert (await api.image(image_id))["status"] == "READY", image_id
    finally:
        await proxy.restore()
        unclean = await deployment.close()
        await proxy.close()
    assert unclean == []

    refetched = sum(count - 1 for count in source.started.values() if count > 1)
    summary = (
        f"{len(accepted)} accepted, {results['ok']} READY, {results['error']} ERROR,"
        f" {results['open']} stuck; creates during the {CUT_SECONDS:.0f} s cut: {dict(statuses)};"
        f" last READY {recovery:.1f} s after the database came back; sources fetched again:"
        f" {refetched}"
    )
    print("\n" + summary)
    assert results == {"ok": len(accepted)}, summary
    assert len(deployment.blob_files()) == len(accepted), summary
