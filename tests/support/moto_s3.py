"""A local moto S3 server for tests, with one bucket, isolated from this machine's AWS set-up."""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import msgspec
import pytest
from moto.server import ThreadedMotoServer

from worker.blobs_s3 import S3Settings


@contextlib.contextmanager
def s3_client(settings: S3Settings) -> Iterator[Any]:
    """A plain (synchronous) botocore client, for looking behind the store."""
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
    )
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def moto_s3(scratch: Path, bucket: str, settings: S3Settings) -> Iterator[S3Settings]:
    """`settings` pointed at a moto server on a free loopback port holding `bucket`;
    botocore reads no configuration file or profile of this machine meanwhile."""
    with pytest.MonkeyPatch.context() as env:
        empty = scratch / "none"
        env.setenv("AWS_CONFIG_FILE", str(empty))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            served = msgspec.structs.replace(settings, endpoint_url=f"http://{host}:{port}")
            with s3_client(served) as client:
                client.create_bucket(Bucket=bucket)
            yield served
        finally:
            server.stop()
