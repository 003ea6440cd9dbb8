"""A server nobody listens for: the client gives up after one quick retry, and a client command
exits 1 at once with one line naming the URL (not seconds of silent retries)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port

from contracts.errors import Code
from kiln.client import KilnClient, KilnError

KILN = Path(sys.executable).parent / "kiln"


@pytest.fixture
def closed_url() -> str:
    return f"http://127.0.0.1:{unused_port()}"


async def test_a_refused_connection_is_reported_at_once(closed_url: str) -> None:
    started = time.monotonic()
    async with KilnClient(closed_url) as kiln:  # five retries for 503s and 429s
        with pytest.raises(KilnError) as caught:
            await kiln.get_image("img1")

    assert time.monotonic() - started < 1.0
    error = caught.value
    assert error.message == f"cannot reach Kiln at {closed_url}: connection refused"
    assert (error.code, error.http_status, error.transient) == (Code.UNAVAILABLE, 0, True)


@pytest.mark.parametrize(
    "command",
    [["images", "list", "--folder", "f1"], ["events", "--folder", "f1"], ["images", "get", "x"]],
)
def test_a_client_command_fails_in_one_line_naming_the_url(
    closed_url: str, command: list[str]
) -> None:
    started = time.monotonic()
    ended = subprocess.run(
        [str(KILN), *command, "--url", closed_url], capture_output=True, text=True, timeout=20
    )

    assert time.monotonic() - started < 5.0  # interpreter start-up included
    assert ended.returncode == 1
    assert ended.stderr.splitlines() == [
        f"error: UNAVAILABLE: cannot reach Kiln at {closed_url}: connection refused"
    ]
