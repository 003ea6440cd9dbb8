"""Fixtures for the operability tests: a local image source, a moto S3 server, an HTTP client."""

import collections
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from ops.opskit import BUCKET, IMAGE, MiB, Source, s3_client
from pytest_aiohttp import AiohttpServer

from support.auth import bearer
from support.images import HITS, IMAGES, serve_image
from worker.blobs_s3 import S3Settings


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ops-images")
    # raw: whole 512-byte sectors; larger than one S3 part of 5 MiB
    (directory / IMAGE).write_bytes(os.urandom(MiB) + bytes(5 * MiB))
    return directory


@pytest.fixture
async def source(image_dir: Path, aiohttp_server: AiohttpServer) -> Source:
    app = web.Application()
    app[HITS], app[IMAGES] = collections.Counter(), image_dir
    app.router.add_get("/img/{name}", serve_image)
    server = await aiohttp_server(app)
    data = (image_dir / IMAGE).read_bytes()
    return Source(server.port, hashlib.sha256(data).hexdigest(), len(data))  # type: ignore[arg-type]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An admin's client (probes and /metrics need no token, the API does)."""
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout, headers=bearer()) as session:
        yield session


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Settings]:
    """A moto S3 server on a free loopback port with one bucket; botocore reads no configuration
    file or profile of this machine."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as env:
        empty = tmp_path_factory.mktemp("aws") / "none"
        env.setenv("AWS_CONFIG_FILE", str(empty))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            settings = S3Settings(
                endpoint_url=f"http://{host}:{port}",
                access_key_id="kiln-ops",
                secret_access_key="kiln-ops-secret",
            )
            with s3_client(settings) as client:
                client.create_bucket(Bucket=BUCKET)
            yield settings
        finally:
            server.stop()
