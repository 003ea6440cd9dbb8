"""Choosing the blob store from the storage URL."""

from pathlib import Path

import pytest

from worker.blob_stores import blob_store_from_url, opened_blob_store
from worker.blobs import FileBlobStore
from worker.blobs_s3 import S3BlobStore, S3Settings


def test_a_file_url_is_a_file_store(tmp_path: Path) -> None:
    store = blob_store_from_url(f"file://{tmp_path}/blobs")

    assert isinstance(store, FileBlobStore)
    assert store.root == tmp_path / "blobs"


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("s3://images/kiln/blobs", "images", "kiln/blobs"), ("s3://images", "images", "")],
)
def test_an_s3_url_names_bucket_and_prefix(url: str, bucket: str, prefix: str) -> None:
    settings = S3Settings(endpoint_url="http://127.0.0.1:9000")

    store = blob_store_from_url(url, settings)

    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.settings) == (bucket, prefix, settings)


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "file://relative", "http://x/y", ""])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="storage URL"):
        blob_store_from_url(url)


async def test_an_opened_s3_store_is_closed_on_exit(
    s3_settings: S3Settings, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[S3BlobStore] = []
    close = S3BlobStore.close

    async def recorded(self: S3BlobStore) -> None:
        closed.append(self)
        await close(self)

    monkeypatch.setattr(S3BlobStore, "close", recorded)

    async with opened_blob_store(f"s3://{s3_bucket}/opened", s3_settings) as store:
        assert not await store.exists("0" * 64)

    assert closed == [store]
