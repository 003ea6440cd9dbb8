"""Fixtures for the blob stores: every behaviour test runs on the file store and on the S3 store,
the latter against a moto server on 127.0.0.1 that these fixtures start (one bucket per run,
one key prefix per test). No test may connect beyond the loopback range."""

import ipaddress
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from blobs.backends import PART, Backend, FileBackend, S3Backend

from support.moto_s3 import moto_s3
from worker.blobs_s3 import S3BlobStore, S3Settings, open_client

BUCKET = f"kiln-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        if inet and not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"test tried to connect to {address[0]}")
        real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(scope="session")
def s3_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Settings]:
    credentials = S3Settings(
        region="us-east-1",
        access_key_id="kiln-test",
        secret_access_key="kiln-test-secret",
        part_size=PART,
    )
    with moto_s3(tmp_path_factory.mktemp("aws"), BUCKET, credentials) as settings:
        yield settings


@pytest.fixture
def s3_bucket(s3_settings: S3Settings) -> str:
    """The run's bucket, on the server of `s3_settings`."""
    return BUCKET


@pytest.fixture
async def s3_store(s3_settings: S3Settings) -> AsyncIterator[S3BlobStore]:
    """An S3 store under a prefix of its own in the run's bucket."""
    store = S3BlobStore(BUCKET, f"test-{uuid.uuid4().hex}/blobs", s3_settings)
    yield store
    await store.close()


@pytest.fixture
async def s3_backend(s3_store: S3BlobStore, s3_settings: S3Settings) -> AsyncIterator[S3Backend]:
    async with open_client(s3_settings) as client:
        yield S3Backend(s3_store, client)


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each test that asks for it runs once per blob store backend."""
    if request.param == "file":
        return FileBackend(tmp_path / "blobs")
    backend: S3Backend = request.getfixturevalue("s3_backend")
    return backend
