"""The gateway SIGKILLed in the middle of a batch import whose client retries every create with
its Idempotency-Key until it is answered (against the gateway started in its place): one
operation per key, one image per name, every image READY."""

import asyncio
import uuid

import aiohttp
import pytest

from support.image_api import FOLDER, ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, KilnProcess, wait_until

CREATES = 24
CONCURRENCY = 6


class RetryingImporter:
    """Sends each create until some gateway answers it, always with the same key."""

    def __init__(self, http: aiohttp.ClientSession, source: ImageSource) -> None:
        self.http = http
        self.source = source
        self.base_url = ""
        self.operations: dict[str, set[str]] = {}  # key: the operation ids it was answered with
        self.retries = 0

    async def create(self, name: str) -> None:
        key = str(uuid.uuid4())
        body = {"folderId": FOLDER, "name": name[:-6], "uri": self.source.url(name)}
        while True:
            try:
                api = ImageApi(self.http, self.base_url)
                status, operation = await api.call(
                    "POST", "/compute/v1/images", json=body, headers={"Idempotency-Key": key}
                )
            except aiohttp.ClientError:
                status, operation = 0, None
            if status == 200:
                self.operations.setdefault(key, set()).add(operation["id"])
                return
            assert status in (0, 503), (status, operation)
            self.retries += 1
            await asyncio.sleep(0.2)  # a client's pause between retries


@pytest.mark.timeout(120)
async def test_a_killed_gateway_leaves_one_operation_per_key(
    deployment: Deployment,
    source: ImageSource,
    http: aiohttp.ClientSession,
    image_names: list[str],
) -> None:
    first = await deployment.gateway()
    await deployment.worker()
    importer = RetryingImporter(http, source)
    importer.base_url = first.url
    queue: asyncio.Queue[str] = asyncio.Queue()
    for name in image_names[:CREATES]:
        queue.put_nowait(name)

    async def client() -> None:
        while not queue.empty():
            await importer.create(queue.get_nowait())

    clients = [asyncio.create_task(client()) for _ in range(CONCURRENCY)]
    await wait_until(lambda: len(importer.operations) >= CREATES // 3, 30, "a third answered")
    first.kill()
    await first.wait(10)
    second: KilnProcess = await deployment.gateway()
    importer.base_url = second.url
    await asyncio.wait_for(asyncio.gather(*clients), 60)

    api = ImageApi(http, second.url)
    operation_ids = [next(iter(ids)) for ids in importer.operations.values()]
    await wait_until(lambda: api.all_done(operation_ids), 60, "every operation done")
    images = await api.images()
    summary = (
        f"{CREATES} creates, {importer.retries} retries across the kill;"
        f" keys answered with more than one operation:"
        f" {sum(len(ids) > 1 for ids in importer.operations.values())};"
        f" images: {len(images)}, READY: {sum(i['status'] == 'READY' for i in images)}"
    )
    print("\n" + summary)
    assert all(len(ids) == 1 for ids in importer.operations.values()), summary
    assert len(importer.operations) == CREATES, summary
    assert sorted(i["name"] for i in images) == sorted(n[:-6] for n in image_names[:CREATES])
    assert all(image["status"] == "READY" for image in images), summary
