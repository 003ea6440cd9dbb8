"""A newcomer's path: the README's "Your first image" blocks, run as written (the server block
in the background, the client block through bash) in a fresh directory beside the project's
venv, end with a READY image."""

import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- quick-start: (\w+)[^>]*-->\n```sh\n(.*?)```", re.S)


def quick_start_blocks() -> dict[str, str]:
    return dict(BLOCK.findall((ROOT / "README.md").read_text()))


def wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)  # kiln dev is still starting
    raise AssertionError(f"{url} not ready within {timeout} s")


@pytest.mark.timeout(90)
def test_the_readme_quick_start_ends_with_a_ready_image(tmp_path: Path) -> None:
    blocks = quick_start_blocks()
    assert set(blocks) == {"server", "client"}, blocks
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    server = subprocess.Popen(
        ["bash", "-c", f"exec {blocks['server'].strip()}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready("http://127.0.0.1:8080/readyz", 30)
        client = subprocess.run(
            ["bash", "-e", "-c", blocks["client"]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert client.returncode == 0, client.stdout + client.stderr
    assert re.search(r"image status\s+READY", client.stdout), client.stdout
    assert re.search(r"tiny\s+READY", client.stdout), client.stdout
