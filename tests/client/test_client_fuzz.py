"""Schemathesis, a client that fuzzes an API from its OpenAPI document, against a live
`kiln dev` with an admin token: no request it makes may get a 5xx or a response that breaks
the document's schema."""

import asyncio
import sys
from pathlib import Path

import pytest

ST = Path(sys.executable).parent / "st"
EXAMPLES_PER_OPERATION = 20


@pytest.mark.timeout(300)
async def test_fuzzing_the_openapi_document_finds_no_server_error(
    kiln_dev: str, admin_token: str, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        str(ST), "run", f"{kiln_dev}/openapi.json",
        "--header", f"Authorization: Bearer {admin_token}",
        "--checks", "not_a_server_error,response_schema_conformance",
        # Fuzzing alone, bounded by --max-examples: the coverage phase, which grows with every
        # rule the document states, runs in tests/gateway/test_api_schemathesis.py.
        "--phases", "fuzzing",
        # An event stream never ends: each example would wait out --request-timeout (that test
        # reads streams for half a second).
        "--exclude-path", "/kiln/v1/events",
        "--max-examples", str(EXAMPLES_PER_OPERATION),
        "--request-timeout", "10",
        "--seed", "20261127",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 240)
    finally:
        if process.returncode is None:  # timed out or cancelled: leave no process, no pipe
            process.kill()
            await process.communicate()
    report = output.decode()
    assert process.returncode == 0, report[-6000:]
    assert " passed" in report and "Server error" not in report
