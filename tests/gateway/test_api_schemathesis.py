"""Schemathesis, the judge of the OpenAPI document, against a live `kiln dev` (SQLite, the
in-process bus and a worker): every check and every phase, the stateful one following the
document's links from a create to the image's other methods. No failure, no error, and no
warning (among them the "mostly rejected" ones: validation_mismatch, low_valid_rate)."""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate

from support.auth import ADMIN, SECRET, bearer
from support.kiln_processes import free_port, wait_until

ST = Path(sys.executable).parent / "st"
KILN = Path(sys.executable).parent / "kiln"
TESTS = Path(__file__).parents[1]  # where support.schemathesis_hooks is
EXAMPLES = 25  # per operation and phase: ~2,000 requests in all
SEED = 20261207
# A READY image to find by family: random folders and families hold none.
SEEDED = {"folderId": "seeded", "family": "seeded-family"}
WARNINGS = [
    "missing_auth", "missing_test_data", "base_url_mismatch", "validation_mismatch",
    "missing_deserializer", "unused_openapi_auth", "unsupported_regex", "method_not_allowed",
    "unmatched_filter", "unresolvable_reference", "low_valid_rate", "rate_limited",
    "dictionary_mismatch",
]  # fmt: skip
LISTS = [
    "GET /compute/v1/images",
    "GET /compute/v1/images/{imageId}/operations",
    "GET /compute/v1/images/{resourceId}:listAccessBindings",
    "GET /resource-manager/v1/folders/{resourceId}:listAccessBindings",
]
# Values only the server hands out are test data, not something a schema can describe: a page
# token is valid only as the nextPageToken of the same query, an event position only up to the
# folder's last. Random ones are rightly refused (400), which positive_data_acceptance would
# report; their arbitrary values are tested in test_api_query_values.py.
CONFIG = f"""
[warnings]
display = {json.dumps(WARNINGS)}

[[operations]]
include-name = {json.dumps(LISTS)}
parameters = {{ "query.pageToken" = "" }}

[[operations]]
include-name = "GET /compute/v1/images:latestByFamily"
parameters = {{ "query.folderId" = "{SEEDED["folderId"]}", "query.family" = "{SEEDED["family"]}" }}

[[operations]]
include-name = "GET /kiln/v1/events"
request-timeout = 0.5  # a stream does not end: read what it sends in half a second
parameters = {{ "query.lastEventId" = "0", "header.Last-Event-ID" = "0" }}
"""


async def _seed_ready_image(base: str, disks: Path) -> None:
    """A READY image of SEEDED's family, made from a disk of the deployment's disk source."""
    disk = disks / SEEDED["folderId"] / "disks" / "seed-disk"
    disk.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "4M"], check=True)
    body = {**SEEDED, "name": "seeded", "diskId": disk.name}
    async with aiohttp.ClientSession(base, headers=bearer()) as session:
        async with session.post("/compute/v1/images", json=body) as reply:
            assert reply.status == 200, await reply.text()
            operation = await reply.json()

        async def done() -> dict[str, Any] | None:
            async with session.get(f"/operations/{operation['id']}") as reply:
                state: dict[str, Any] = await reply.json()
            return state if state["done"] else None

        finished = await wait_until(done, 20, "the seeded image's import")
    assert "error" not in finished, finished


@pytest.fixture
async def kiln_dev(tmp_path: Path) -> AsyncIterator[str]:
    port, disks = free_port(), tmp_path / "disks"
    disks.mkdir()  # a worker's disk source must exist when it starts
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")} | {
        "KILN_TOKEN_SECRET": SECRET,
        "KILN_ADMINS": ADMIN,
        "KILN_DISK_SOURCE_DIR": str(disks),
        "KILN_DATA_DIR": str(tmp_path / "data"),
        "KILN_HTTP_PORT": str(port),
        "KILN_IMPORT_ALLOWED_HOSTS": "127.0.0.1",
    }
    log = (tmp_path / "kiln.log").open("w")
    process = await asyncio.create_subprocess_exec(
        str(KILN), "dev", env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until(lambda: _listening(port), 20, "kiln dev listening")
        await _seed_ready_image(base, disks)
        yield base
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 40)
        log.close()


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


@pytest.mark.timeout(240)
async def test_schemathesis_finds_nothing_in_any_phase(kiln_dev: str, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{kiln_dev}/openapi.json") as got:
        validate(await got.json())  # a valid OpenAPI 3.1 document, or this raises
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    report_path = tmp_path / "report.json"
    hooks = {"SCHEMATHESIS_HOOKS": "support.schemathesis_hooks", "PYTHONPATH": str(TESTS)}
    process = await asyncio.create_subprocess_exec(
        str(ST), "--config-file", str(tmp_path / "schemathesis.toml"),
        "run", f"{kiln_dev}/openapi.json",
        "--header", f"Authorization: {bearer()['Authorization']}",
        "--checks", "all",
        "--exclude-checks", "positive_data_acceptance",  # the hooks' own version of it runs
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(EXAMPLES),
        "--seed", str(SEED),
        "--request-timeout", "10",
        "--report", "json", "--report-json-path", str(report_path),
        "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        env=os.environ | hooks,
    )  # fmt: skip
    output = (await asyncio.wait_for(process.communicate(), 200))[0].decode()
    report = json.loads(report_path.read_text())

    found = {
        "failures": report["failures"],
        "errors": report["errors"],
        "warnings": {kind: labels for kind, labels in report["warnings"].items() if labels},
    }
    shown = output[output.find("FAILURES") :][:12000] + output[-3000:]
    assert found == {"failures": [], "errors": [], "warnings": {}}, shown
    assert process.returncode == 0, shown
    assert report["operations"]["tested"] == report["operations"]["total"] == 17
    # The document has no examples to replay; every other phase ran and passed.
    phases = {name: phase["status"] for name, phase in report["phases"].items()}
    assert phases == {
        "examples": "skip",
        "coverage": "success",
        "fuzzing": "success",
        "stateful": "success",
    }


async def test_a_query_at_its_longest_is_answered_in_the_error_shape(kiln_dev: str) -> None:
    """Every parameter at its contract length in 4-byte characters: ~16 KiB percent-encoded,
    past aiohttp's default request line, whose parser would answer in plain text."""
    params = {"folderId": "😀" * 50, "filter": "😀" * 1000, "orderBy": "😀" * 100}
    async with (
        aiohttp.ClientSession(headers=bearer()) as session,
        session.get(f"{kiln_dev}/compute/v1/images", params=params) as reply,
    ):
        body = await reply.json()

    assert reply.status == 400 and body["message"].startswith("filter: "), body
