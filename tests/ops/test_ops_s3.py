"""Kiln on an S3-compatible object store (a local moto server): `KILN_STORAGE_URL=s3://…` and the
`KILN_S3_*` settings reach the worker, an import lands at its content address, and a largest
import the store cannot hold stops start-up."""

import uuid
from pathlib import Path

import aiohttp
import pytest
from ops.opskit import BUCKET, Source, scrape, settings, wait_done

from kiln import processes
from kiln.settings import Settings, SettingsError
from support.moto_s3 import s3_client
from worker.blobs_s3 import MAX_PARTS, S3Settings

MiB = 1 << 20


def s3_kiln(tmp_path: Path, s3: S3Settings, prefix: str, **values: object) -> Settings:
    return settings(
        tmp_path,
        storage_url=f"s3://{BUCKET}/{prefix}",
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
        s3_access_key_id=s3.access_key_id,
        s3_secret_access_key=s3.secret_access_key,
        s3_addressing_style="path",
        **values,
    )


async def test_an_import_lands_in_the_object_store(
    tmp_path: Path, s3: S3Settings, source: Source, http: aiohttp.ClientSession
) -> None:
    prefix = f"ops-{uuid.uuid4().hex}/blobs"
    # Parts of 5 MiB: the 6 MiB image streams as a multipart upload, then is copied into place.
    config = s3_kiln(tmp_path, s3, prefix, s3_part_size=str(5 * MiB), import_max_bytes="1073741824")
    base = f"http://127.0.0.1:{config.http_port}"
    request = {"folderId": "b1gops", "name": "on-s3", "uri": source.url()}
    async with processes.dev_process(config):
        before = await scrape(http, f"{base}/metrics")
        async with http.post(f"{base}/compute/v1/images", json=request) as response:
            assert response.status == 200
            created = await response.json()
        done = await wait_done(http, base, created["id"])
        assert "error" not in done, done
        async with http.get(f"{base}/compute/v1/images/{created['metadata']['imageId']}") as r:
            image = await r.json()
        after = await scrape(http, f"{base}/metrics")  # kiln dev: the worker's series too
    assert image["status"] == "READY" and image["storageSize"] == str(source.size)
    key = f"{prefix}/sha256/{source.digest[:2]}/{source.digest}"
    with s3_client(s3) as client:
        head = client.head_object(Bucket=BUCKET, Key=key)
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    assert head["ContentLength"] == source.size
    assert [item["Key"] for item in listed["Contents"]] == [key]  # no temporary object left

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("kiln_operations_finished_total", kind="image.create", result="ok") == 1
    assert delta("kiln_import_size_bytes_count", source="uri") == 1
    assert delta("kiln_import_size_bytes_sum", source="uri") == source.size
    assert delta("kiln_import_duration_seconds_count", source="uri", result="ok") == 1
    assert after.value("kiln_imports_in_flight") == 0


async def test_largest_import_must_fit_one_object(tmp_path: Path, s3: S3Settings) -> None:
    too_large = str(MAX_PARTS * 5 * MiB + 1)
    config = s3_kiln(tmp_path, s3, "unused", s3_part_size=str(5 * MiB), import_max_bytes=too_large)
    with pytest.raises(SettingsError, match=r"KILN_IMPORT_MAX_BYTES.*KILN_S3_PART_SIZE"):
        async with processes.blob_store(config):
            pass


def test_secret_key_stays_out_of_reprs(tmp_path: Path, s3: S3Settings) -> None:
    config = s3_kiln(tmp_path, s3, "unused")
    assert s3.secret_access_key not in repr(config)
    assert s3.secret_access_key not in repr(processes.s3_settings(config))
