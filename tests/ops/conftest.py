"""Fixtures for the operability tests: a local image source, a moto S3 server, an HTTP client."""

import collections
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from ops.opskit import BUCKET, IMAGE, MiB, Source
from pytest_aiohttp import AiohttpServer

from support.auth import bearer
from support.images import HITS, IMAGES, serve_image
from support.moto_s3 import moto_s3
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
    credentials = S3Settings(access_key_id="kiln-ops", secret_access_key="kiln-ops-secret")
    with moto_s3(tmp_path_factory.mktemp("aws"), BUCKET, credentials) as settings:
        yield settings
