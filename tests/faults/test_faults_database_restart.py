"""PostgreSQL restarted in the middle of a batch (its own server, stopped with `-m fast`, which
ends every session, then started again): every create accepted before or after ends READY,
none in ERROR, each image announced READY once."""

import asyncio
import collections
import time
from pathlib import Path

import aiohttp
import pytest

from support.amqp_tap import EventTap
from support.image_api import ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, wait_until
from support.private_postgres import private_postgres

IN_FLIGHT = 12
DOWN_SECONDS = 5.0


@pytest.mark.timeout(150)
async def test_a_database_restart_costs_time_not_images(
    tmp_path: Path,
    source: ImageSource,
    events: EventTap,
    http: aiohttp.ClientSession,
    image_names: list[str],
    rabbit_url: str,
) -> None:
    async with private_postgres(max_connections=80) as server:
        url = await server.create_database("kiln")
        deployment = Deployment(tmp_path, database_url=url, broker_url=rabbit_url)
        try:
            gateway = await deployment.gateway()
            await events.start()
            await deployment.worker()
            api = ImageApi(http, gateway.url)
            names = iter(image_names)
            accepted = dict(
                [
                    await api.create_ok(n[:-6], source.url(n))
                    for n in [next(names) for _ in range(IN_FLIGHT)]
                ]
            )
            await wait_until(lambda: source.active >= 3, 15, "imports streaming")

            await server.stop("fast")
            await asyncio.sleep(DOWN_SECONDS)  # the database stays down this long
            await server.start()
            restarted_at = time.monotonic()
            for _ in range(3):  # creates accepted once it is back
                name = next(names)
                image_id, operation_id = await api.create_ok(name[:-6], source.url(name))
                accepted[image_id] = operation_id

            await wait_until(
                lambda: set(events.ready_ids()) >= set(accepted), 60, "every image READY"
            )
            recovery = time.monotonic() - restarted_at
            results: collections.Counter[str] = collections.Counter()
            for operation_id in accepted.values():
                operation = await api.operation(operation_id)
                results["error" if "error" in operation else "ok"] += 1
        finally:
            unclean = await deployment.close()
    ready_events = {image: len(ids) for image, ids in events.ready_ids().items()}
    summary = (
        f"{len(accepted)} accepted, {results['ok']} READY, {results['error']} ERROR;"
        f" last READY {recovery:.1f} s after the restart"
    )
    print("\n" + summary)
    assert unclean == []
    assert results == {"ok": len(accepted)}, summary
    assert ready_events == dict.fromkeys(accepted, 1), summary
