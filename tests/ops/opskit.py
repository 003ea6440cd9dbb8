"""What the operability tests share besides fixtures: settings for in-process Kiln, reading
`/metrics`, waiting for an operation, looking into the S3 bucket."""

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from kiln.settings import Settings, build
from support import auth
from support.kiln_processes import free_port

MiB = 1 << 20
IMAGE = "disk.raw"
BUCKET = f"kiln-ops-{uuid.uuid4().hex[:12]}"


class Source:
    """The local image server: where its image is, and what the image's bytes are."""

    def __init__(self, port: int, digest: str, size: int) -> None:
        self.port, self.digest, self.size = port, digest, size

    def url(self, name: str = IMAGE) -> str:
        return f"http://127.0.0.1:{self.port}/img/{name}"


def settings(tmp_path: Path, **values: Any) -> Settings:
    """`kiln dev`-like settings in `tmp_path`, on free ports."""
    given = {
        "data_dir": str(tmp_path / "data"),
        "broker_url": "memory://",
        "http_port": free_port(),
        "worker_http_port": free_port(),
        "import_allowed_hosts": "127.0.0.1",
        **auth.SETTINGS,
        **values,
    }
    return build(given)


async def wait_done(http: aiohttp.ClientSession, base: str, operation_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            async with http.get(f"{base}/operations/{operation_id}") as response:
                operation: dict[str, Any] = await response.json()
            if operation["done"]:
                return operation
            await asyncio.sleep(0.05)  # polling the API, as a client does


class Samples:
    """A parsed `/metrics` page."""

    def __init__(self, text: str) -> None:
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples = [s for family in self.families.values() for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def labels(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name == name]


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        return Samples(await response.text())
