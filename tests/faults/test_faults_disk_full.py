"""The blob disk full (a small tmpfs, filled): imports wait without downloading their sources
again and again, the worker reports itself not ready, and once space is freed every image
ends READY, its source fetched once more."""

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from support.image_api import ImageApi
from support.image_source import ImageSource
from support.kiln_processes import Deployment, free_port, wait_until

MiB = 1 << 20
DISK = 24 * MiB
LEFT_FREE = 256 << 10  # less than one test image
CREATES = 4
WAITED = 8.0  # seconds full: the handlers' first pauses add up to 7.5 s


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def readiness(http: aiohttp.ClientSession, port: int) -> tuple[int, dict]:
    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
        return response.status, await response.json()


@pytest.mark.timeout(120)
async def test_a_full_blob_disk_waits_for_room_then_every_image_completes(
    tmp_path: Path,
    deployment: Deployment,
    source: ImageSource,
    http: aiohttp.ClientSession,
    image_names: list[str],
) -> None:
    with small_disk(deployment.blob_root) as disk:
        filler = disk / "filler"
        filler.write_bytes(bytes(DISK - LEFT_FREE))
        gateway = await deployment.gateway()
        side_port = free_port()
        worker = await deployment.worker(worker_http_port=side_port)
        api = ImageApi(http, gateway.url)
        accepted = dict([await api.create_ok(n[:-6], source.url(n)) for n in image_names[:CREATES]])
        await worker.wait_logged("dependency.unavailable", 20, dependency="blob store")
        await asyncio.sleep(WAITED)  # the fault lasts this long: nothing may fetch again

        fetched_while_full = sum(source.started.values())
        status, body = await readiness(http, side_port)
        assert (status, body["blobs"]) == (503, False), body
        assert fetched_while_full <= CREATES, dict(source.started)

        filler.unlink()
        freed_at = time.monotonic()
        await wait_until(
            lambda: api.all_done(list(accepted.values())), 60, "every operation done after"
        )
        recovery = time.monotonic() - freed_at
        for image_id, operation_id in accepted.items():
            operation = await api.operation(operation_id)
            assert "error" not in operation, operation
            assert (await api.image(image_id))["status"] == "READY"
        assert (await readiness(http, side_port))[0] == 200
    print(
        f"\n{len(accepted)} accepted, all READY {recovery:.1f} s after space was freed;"
        f" sources fetched {fetched_while_full} times while full, {sum(source.started.values())}"
        f" in all; waits logged: {len(worker.logged('dependency.unavailable'))}"
    )


@pytest.mark.timeout(60)
async def test_a_disk_full_past_the_deadline_ends_the_import_naming_the_blob_store(
    deployment: Deployment,
    source: ImageSource,
    http: aiohttp.ClientSession,
    image_names: list[str],
) -> None:
    with small_disk(deployment.blob_root) as disk:
        (disk / "filler").write_bytes(bytes(DISK - LEFT_FREE))
        gateway = await deployment.gateway()
        await deployment.worker(dependency_deadline_seconds=3)
        api = ImageApi(http, gateway.url)
        _, operation_id = await api.create_ok("late", source.url(image_names[0]))
        await wait_until(lambda: api.all_done([operation_id]), 30, "the operation done")

        error = (await api.operation(operation_id))["error"]
    assert error["code"] == 14, error
    assert error["message"].startswith("blob store unavailable for "), error
    assert error["message"].endswith("No space left on device"), error
    assert source.started[image_names[0]] == 1
